"""Crash-safe file writes: temporary file in the same folder, flush, fsync, os.replace, fsync folder.

A reader (this program after a crash, or a person running ``cat``) only ever sees the old
complete file or the new complete file, never a half-written one: ``os.replace`` is atomic on
POSIX file systems, and the fsyncs make the new bytes and the new directory entry durable
before the call returns.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np

from errors import TrainerError

log = logging.getLogger(__name__)

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
        if path.is_dir() and not path.is_symlink():
            # A folder where a file belongs (made by hand, say): rename can't replace it.
            aside = move_aside(path)
            log.warning("WARNING: %s was a folder, not a file; moved it to %s and wrote the file", path, aside)
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


def copy_file(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` atomically."""
    with atomic_path(Path(target)) as tmp:
        shutil.copyfile(source, tmp)


def move_aside(path: Path) -> Path:
    """Rename a damaged file (or folder, or link) to ``<name>.damaged`` (numbered if taken)."""
    path = Path(path)
    aside = path.with_name(path.name + ".damaged")
    number = 1
    while aside.exists() or aside.is_symlink():
        number += 1
        aside = path.with_name(f"{path.name}.damaged-{number}")
    os.replace(path, aside)
    return aside


def remove(path: Path) -> None:
    """Delete a file, a link or a folder with what it holds."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# The lock is one byte far past the owner's text: Windows locks are mandatory, and a lock on
# the text would stop the second process from reading who holds the folder.
_LOCK_OFFSET = 1 << 20


def _try_lock(handle) -> bool:
    """Take an exclusive, non-blocking lock on ``handle``'s file; False if another process holds it.

    The operating system drops the lock when the process ends, however it ends (kill -9 too).
    """
    if os.name == "nt":
        import msvcrt

        handle.seek(_LOCK_OFFSET)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def exclusive_folder(folder: Path, what: str) -> Iterator[None]:
    """Hold a lock on ``folder`` (``.lock`` inside it) for the block, on POSIX and Windows.

    Two trainers writing one checkpoint folder would overwrite each other's checkpoints; the
    second one stops instead.

    Raises:
        FolderBusy: another process holds the lock.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as handle:
        if not _try_lock(handle):
            handle.seek(0)
            owner = handle.read(200).strip() or "another process"
            raise FolderBusy(f"{folder} is in use by {owner} ({what}); wait for it to finish, stop it, "
                             f"or give this run another --checkpoint-dir")
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}")
        handle.flush()
        yield


def abandoned(folder: Path) -> bool:
    """True if no process holds ``folder``'s ``exclusive_folder`` lock (whoever held it is gone);
    False while one does, or if the folder does not exist."""
    try:
        with open(Path(folder) / ".lock", "a+") as handle:
            return _try_lock(handle)
    except OSError:
        return False


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files that a killed process left behind in ``folder``."""
    removed = []
    if Path(folder).is_dir():
        for stale in Path(folder).glob(f".*{TEMPORARY_MARK}*"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
                removed.append(stale)
    return removed
