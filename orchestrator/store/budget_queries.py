"""The statements of provider budgets, written once for both databases."""

from __future__ import annotations

from orchestrator.store.dialect import Dialect

COOLDOWN = "SELECT until FROM budget_cooldowns WHERE provider = ? AND kind = ?"

# The call at a rank, latest first: parameters (provider, kind, rank - 1).
CALL_AT_RANK = """
    SELECT at FROM budget_calls WHERE provider = ? AND kind = ?
    ORDER BY at DESC LIMIT 1 OFFSET ?
"""

# Calls older than every window and cooldown count no more.
PRUNE = "DELETE FROM budget_calls WHERE provider = ? AND kind = ? AND at <= ?"
INSERT_CALL = "INSERT INTO budget_calls (provider, kind, at) VALUES (?, ?, ?)"
# Calls granted after a time: parameters (provider, kind, since).
COUNT_CALLS = "SELECT COUNT(*) FROM budget_calls WHERE provider = ? AND kind = ? AND at > ?"


def cool_down(dialect: Dialect) -> str:
    """A cooldown until a time; a later one already set stays."""
    later = dialect.greatest("budget_cooldowns.until", "excluded.until")
    return f"""
        INSERT INTO budget_cooldowns (provider, kind, until) VALUES (?, ?, ?)
        ON CONFLICT (provider, kind) DO UPDATE SET until = {later}
    """
