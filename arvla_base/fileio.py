"""Atomic file writes: a file appears complete under its name, or not at all.

Every arvla writer (checkpoints, episodes, records, generated parameter files) goes through
``atomic_write``: a hidden temp file in the same directory (so the rename cannot cross file
systems, and no ``*.npz`` / ``*.json`` listing ever sees it), fsynced, then ``os.replace``d.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from typing import Callable

import numpy as np

__all__ = ["atomic_save_npz", "atomic_write", "atomic_write_text", "read_npz"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> None:
    """Make ``path`` appear complete or not at all: ``write(tmp)`` fills a hidden temp file in
    the same directory (so the rename cannot cross file systems), which is fsynced and then
    ``os.replace``d over ``path``. On any error (or a kill) the temp file is removed or left as a
    hidden ``.name.*.tmp`` that no reader looks at; ``path`` keeps its previous content."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """``text`` (UTF-8) to ``path`` through ``atomic_write``."""
    atomic_write(path, lambda tmp: pathlib.Path(tmp).write_text(text, encoding="utf-8"))


def atomic_save_npz(path: str | os.PathLike[str], arrays: dict[str, np.ndarray], *,
                    compressed: bool = False) -> pathlib.Path:
    """``np.savez`` to ``path`` through ``atomic_write``. Shared by every arvla writer of .npz
    files (episodes, records)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez appends no ".npz" to the name
            (np.savez_compressed if compressed else np.savez)(f, **arrays)

    atomic_write(path, write)
    return pathlib.Path(path)


def read_npz(path: str | os.PathLike[str], error: type[Exception], what: str) -> dict[str, np.ndarray]:
    """Every array of an .npz file (pickle disabled); ``error`` naming ``what`` and the path when
    it is missing or unreadable."""
    path = pathlib.Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except Exception as err:
        raise error(f"cannot read {what} {path}: {err}") from err
