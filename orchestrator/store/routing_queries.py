"""The statements of provider health and spend, written once for both databases."""

from __future__ import annotations

HEALTH = "SELECT * FROM provider_health WHERE provider = ?"
ALL_HEALTH = "SELECT * FROM provider_health ORDER BY provider"

# Parameters: provider, failures, cooldown_s, until, probe_job, probe_until,
# total_failures, cooldowns.
PUT_HEALTH = """
    INSERT INTO provider_health (provider, failures, cooldown_s, until, probe_job,
                                 probe_until, total_failures, cooldowns)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (provider) DO UPDATE SET
        failures = excluded.failures, cooldown_s = excluded.cooldown_s,
        until = excluded.until, probe_job = excluded.probe_job,
        probe_until = excluded.probe_until, total_failures = excluded.total_failures,
        cooldowns = excluded.cooldowns
"""

SPEND_OF_DAY = "SELECT provider, credits, jobs FROM provider_spend WHERE day = ?"
