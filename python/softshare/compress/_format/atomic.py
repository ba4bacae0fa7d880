"""Writing a file completely or not at all: a temporary file beside it, then a rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["replace_atomically"]


def _umask() -> int:
    """The process's umask: from /proc where Linux offers it, else set and put back."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: a moment's race with threads making files
    os.umask(mask)
    return mask


def replace_atomically(path: str | os.PathLike[str], write: Callable[[Path], object]) -> None:
    """``write`` a new temporary file in ``path``'s folder, then rename it onto ``path``.

    The temporary name is unique (threads and processes writing one path do
    not share it) and short (any legal ``path`` works); it is removed if
    ``write`` fails. The file gets the mode a new file gets (0666 less the
    umask), as ``open(path, "w")`` would give it, not ``mkstemp``'s 0600.
    """
    target = Path(path)
    fd, name = tempfile.mkstemp(prefix=".softshare-", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
