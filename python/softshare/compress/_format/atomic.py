"""Writing a file completely or not at all: a temporary file beside it, then a rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["replace_atomically"]


def replace_atomically(path: str | os.PathLike[str], write: Callable[[Path], object]) -> None:
    """``write`` a new temporary file in ``path``'s folder, then rename it onto ``path``.

    The temporary name is unique (threads and processes writing one path do
    not share it) and short (any legal ``path`` works); it is removed if
    ``write`` fails.
    """
    target = Path(path)
    fd, name = tempfile.mkstemp(prefix=".softshare-", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
