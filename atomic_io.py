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

from errors import TrainerError

TEMPORARY_MARK = ".tmp-"


class FolderBusy(TrainerError):
    """Another process is writing the same folder."""


def fsync_path(path: Path) -> None:
    """Make a file's bytes, or a folder's renames and unlinks, durable."""
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
    """Yield a temporary path to write; when the block ends, the file is fsynced and replaces
    ``path`` atomically, and the folder is fsynced.

    For writers that insist on a file name (``model.save``). The temporary file is removed if
    the block raises, so a failed write never disturbs the file already at ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_path(path.parent)


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb") -> Iterator:
    """Open a temporary file for writing; once closed, it is fsynced and moved onto ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, mode) as handle:
            yield handle


def write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Uncompressed ``.npz``: these float arrays barely compress, and loading stays a plain read."""
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)


@contextlib.contextmanager
def exclusive_folder(folder: Path, what: str) -> Iterator[None]:
    """Hold an advisory lock on ``folder`` (``.lock`` inside it) for the block.

    Two trainers writing one checkpoint folder would overwrite each other's checkpoints; the
    second one stops instead. The kernel drops the lock when the process dies, even by kill -9.

    Raises:
        FolderBusy: another process holds the lock.
    """
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise FolderBusy(f"{folder} is in use by {owner} ({what}); wait for it to finish, stop it, "
                             f"or give this run another --checkpoint-dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}")
        handle.flush()
        yield


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files that a killed process left behind in ``folder``."""
    removed = []
    if Path(folder).is_dir():
        for stale in Path(folder).glob(f".*{TEMPORARY_MARK}*"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
                removed.append(stale)
    return removed
