"""Is the SQLite file still the one we opened? And was there one here before?

An open connection keeps writing to a file that was deleted or replaced (its
inode lives on until the connection closes), so every commit would be
acknowledged and then lost with the process. ``FileWatch`` compares the path's
device and inode with those seen at open, one ``stat`` per write transaction (a
group of callbacks counts once), and once they differ it stays lost.

``DatabaseMarker`` is a file in the data directory written once the database
exists. A missing or empty database where the marker says there was one is not
silently made anew at start-up: the operator must allow it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from orchestrator.security.private_files import create_private_file, make_private_dir
from schemas.errors import DatabaseLost


@dataclass(frozen=True, slots=True)
class FileIdentity:
    device: int
    inode: int


def identity_of(path: Path) -> FileIdentity | None:
    """The file's identity, or None if there is no file at ``path``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return FileIdentity(st.st_dev, st.st_ino)


class FileWatch:
    """Notices when the file at a path is no longer the one pinned."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._pinned: FileIdentity | None = None
        self._lost: str | None = None

    def pin(self) -> None:
        """Remember the file now at the path (just after opening it)."""
        self._pinned = identity_of(self._path)
        self._lost = None

    def check(self) -> None:
        """DatabaseLost if the file was deleted or replaced since ``pin``; from then
        on always (the connections still point at the old file)."""
        if self._lost is None and self._pinned is not None:
            now = identity_of(self._path)
            if now is None:
                self._lost = f"the database file {self._path} was deleted while in use"
            elif now != self._pinned:
                self._lost = f"the database file {self._path} was replaced while in use"
        if self._lost is not None:
            raise DatabaseLost(f"{self._lost}; restore it and restart the service")


@dataclass(frozen=True, slots=True)
class DatabaseMarker:
    """``<data dir>/<database file name>.created``: this database has existed."""

    path: Path
    database: Path
    allow_new: bool = False

    @classmethod
    def beside(cls, data_dir: Path, database: Path, *, allow_new: bool) -> DatabaseMarker:
        return cls(data_dir / f"{database.name}.created", database, allow_new)

    def had_database(self) -> bool:
        return self.path.exists()

    def check_new(self) -> None:
        """Called when the database is missing or has no schema: refuse to make a new
        one where there was one before, unless allowed."""
        if self.allow_new or not self.had_database():
            return
        raise DatabaseLost(
            f"the database {self.database} is missing or empty, but {self.path} says it "
            "existed: acknowledged jobs and callbacks would be lost. Restore the file, or "
            "start with UPSCALE_ALLOW_NEW_DATABASE=1 (upscale serve --allow-new-database) "
            "to begin with an empty database"
        )

    def write(self) -> None:
        make_private_dir(self.path.parent)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with os.fdopen(create_private_file(tmp, exclusive=False), "w") as out:
            out.truncate()
            out.write(json.dumps({"database": str(self.database.resolve())}) + "\n")
        os.replace(tmp, self.path)
