"""``upscale db``: the database."""

from __future__ import annotations

import argparse
import asyncio

from orchestrator.cli.flags import Commands, Flags
from orchestrator.common.logs import configure
from orchestrator.common.settings import load_settings


def _db_migrate(args: argparse.Namespace) -> int:
    from orchestrator.service.runtime import open_store
    from orchestrator.store.postgres import PostgresStore

    settings = load_settings()
    configure(settings.log_level, settings.log_format)
    store = open_store(settings, snapshot=lambda job: {})

    async def main() -> int:
        if isinstance(store, PostgresStore):
            return await store.migrate()
        await store.open()  # SQLite migrates when opened
        try:
            return await store.schema_version()
        finally:
            await store.close()

    print(f"database schema at version {asyncio.run(main())}")
    return 0


def register(commands: Commands, flags: Flags) -> None:
    db = commands.add_parser("db", help="the database")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    p = db_commands.add_parser("migrate", help="apply pending migrations (run before starting)")
    p.set_defaults(func=_db_migrate)
