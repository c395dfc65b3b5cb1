"""What SQLite and PostgreSQL spell differently, for statements written once.

Statements are written with ``?`` placeholders and standard SQL where both
databases agree (``CAST(? AS ...)``, ``IN (...)``, ``RETURNING``, ``ON CONFLICT``).
The few places where they do not are functions of a :class:`Dialect`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class Dialect:
    """One database's spelling of the parts the shared statements leave open."""

    name: str  # also the folder of its migrations
    numbered_placeholders: bool  # ``$1, $2, ...`` instead of ``?``
    greatest_function: str  # the larger of two values (scalar, not the aggregate)
    indexed_by: bool  # the planner takes an index hint (``INDEXED BY``)
    json_membership: str  # a condition over ``{array}`` (JSON text) and ``{value}``
    like_any_case: str  # LIKE ignoring case (SQLite's LIKE already does, for ASCII)

    def placeholders(self, sql: str) -> str:
        """The statement with this database's placeholders."""
        return numbered(sql) if self.numbered_placeholders else sql

    def greatest(self, first: str, second: str) -> str:
        return f"{self.greatest_function}({first}, {second})"

    def json_array_has(self, column: str, value: str) -> str:
        """A condition: the JSON array of strings in ``column`` holds ``value``."""
        return self.json_membership.format(array=column, value=value)

    def index_hint(self, index: str) -> str:
        """Use ``index`` for this read where the planner takes a hint; else nothing."""
        return f"INDEXED BY {index}" if self.indexed_by else ""


SQLITE = Dialect(
    name="sqlite",
    numbered_placeholders=False,
    greatest_function="MAX",
    indexed_by=True,
    like_any_case="LIKE",
    json_membership="EXISTS (SELECT 1 FROM json_each({array}) WHERE json_each.value = {value})",
)
POSTGRES = Dialect(
    name="postgres",
    numbered_placeholders=True,
    greatest_function="GREATEST",
    indexed_by=False,
    like_any_case="ILIKE",
    json_membership="(CAST({array} AS jsonb) @> jsonb_build_array(CAST({value} AS text)))",
)


_PLACEHOLDER = re.compile(r"\?")


@lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """The statement with PostgreSQL's placeholders: ``$1``, ``$2``, ... in order."""
    count = 0

    def next_number(_: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"${count}"

    return _PLACEHOLDER.sub(next_number, sql)
