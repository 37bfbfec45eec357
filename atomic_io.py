"""Crash-safe file writes: temporary file in the same folder, flush, fsync, os.replace, fsync folder.

A reader (this program after a crash, or a person running ``cat``) only ever sees the old
complete file or the new complete file, never a half-written one: ``os.replace`` is atomic on
POSIX file systems, and the fsyncs make the new bytes and the new directory entry durable
before the call returns.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np

TEMPORARY_MARK = ".tmp-"


def fsync_directory(folder: Path) -> None:
    """Make a rename or unlink inside ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file that another library wrote and closed."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_path(path: Path) -> Path:
    """A hidden sibling of ``path`` that keeps its suffix (Keras insists on ``.keras``)."""
    return path.with_name(f".{path.stem}{TEMPORARY_MARK}{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    For writers that insist on a file name (``model.save``). The temporary file is removed if
    the block raises, so a failed write never disturbs the file already at ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_directory(path.parent)


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb") -> Iterator:
    """Open a temporary file for writing; on success flush, fsync and move it onto ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Uncompressed ``.npz``: these float arrays barely compress, and loading stays a plain read."""
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files that a killed process left behind in ``folder``."""
    removed = []
    if Path(folder).is_dir():
        for stale in Path(folder).glob(f".*{TEMPORARY_MARK}*"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
                removed.append(stale)
    return removed
