"""The dialect seam: one statement, each database's spelling."""

from __future__ import annotations

from orchestrator.store.dialect import POSTGRES, SQLITE, numbered


def test_postgres_numbers_placeholders_in_order_and_sqlite_keeps_them() -> None:
    sql = "UPDATE jobs SET state = ? WHERE id = ? AND version = ?"
    assert POSTGRES.placeholders(sql) == "UPDATE jobs SET state = $1 WHERE id = $2 AND version = $3"
    assert SQLITE.placeholders(sql) == sql
    assert numbered("SELECT 1") == "SELECT 1"


def test_functions_and_hints_are_spelled_per_database() -> None:
    assert SQLITE.greatest("a", "b") == "MAX(a, b)"
    assert POSTGRES.greatest("a", "b") == "GREATEST(a, b)"
    assert SQLITE.index_hint("jobs_due") == "INDEXED BY jobs_due"
    assert POSTGRES.index_hint("jobs_due") == ""


def test_json_membership_leaves_no_question_mark_operator_for_numbering() -> None:
    """PostgreSQL's jsonb ``?`` operator would be taken for a placeholder."""
    condition = POSTGRES.json_array_has("s.types", "?")
    assert POSTGRES.placeholders(condition).count("$1") == 1
    assert "?" not in POSTGRES.placeholders(condition)
    assert "json_each(s.types)" in SQLITE.json_array_has("s.types", "?")
