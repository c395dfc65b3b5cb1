"""Files and directories only this service's user may read: 0600 and 0700, whatever the umask.

The data directory holds the database, the generated secrets, uploaded inputs
and results: nothing in it is for other users of the machine. The mode is set
on the open descriptor right after creation (a umask can only take bits away
from the mode given to ``open``/``mkdir``, and a loose one would leave them on).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents as 0700; existing ones are left as they are."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(directory, DIR_MODE)


def create_private_file(path: Path, *, exclusive: bool = True) -> int:
    """Open ``path`` for writing, creating it as 0600; the descriptor (the caller closes it).

    With ``exclusive`` an existing file is an error (FileExistsError)."""
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    if exclusive:
        flags |= os.O_EXCL
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_private_file(path: Path) -> None:
    """Create ``path`` empty and private (and its missing directories) unless it exists."""
    make_private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(create_private_file(path))
