"""The cached, preprocessed data split: ``checkpoints/training_data.npz`` and its arrays beside it.

Parsing, splitting and preprocessing thousands of curves takes a while; a rerun (after an
interruption, say) reads this cache instead. The curves themselves are ``.npy`` files beside the
index, read by rows (``row_store.RowFile``) and never loaded whole, so memory stays bounded
whatever the data size:

    training_data.<build>.X_train.npy   float32 [rows, sequence_length, channels]   model inputs
    ...X_val.npy, ...X_test.npy
    training_data.<build>.raw_test.npy  float32 [rows, sequence_length]      test curves before preprocessing

The index ``training_data.npz`` holds the rest, small:

    y_train, y_val, y_test   int8 [rows]    1 = planet host, 0 = not
    index_train/val/test     int64 [rows]   row of the original curve in the loaded data
    augmented_train/val/test bool [rows]    row is a copy (of a training host, or a curve with an
                                            injected planet or binary); read as none where an
                                            index of 1.5 or before lacks it (val, test)
    source_test, line_test   file index and line of each test curve; ``files`` the file names
    file_rows                data rows of each file
    arrays                   JSON text: the file of each array above (a list of files, one per
                             worker, when the workers of a job made it: ``shards.py``)
    fingerprint              JSON text: the inputs it was made from
    shards                   JSON text, a job's cache only: what each worker loaded and made

The fingerprint lists every data file (relative name, size, modification time) and every
setting that shapes the arrays (preprocessing, split, seed, format version). When any of them
differs, the cache is rebuilt with one line saying what changed; a damaged index or array
(unreadable, truncated, missing) is rebuilt with one line saying so. Written atomically: the
arrays first, each under a name of its own build (``<build>``), then the index, replaced in one
rename; a crash leaves the previous cache or none, and the next build deletes what a crashed one
left. Read without pickles (``allow_pickle=False``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import atomic_io
import fingerprints
import shards
from augmentation import SPLITS, Split
from errors import TrainerError
from memory import release_freed_memory
from row_store import RowFile, RowFiles, RowFileWriter

log = logging.getLogger(__name__)

# The arrays' contents, and so the fingerprint, are those of format 1 (one .npz file): a checkpoint
# made with a format 1 cache still resumes; the old file is read as damaged and rebuilt.
CACHE_FORMAT = 1
CHUNK_ROWS = 2048          # curves made and preprocessed at once while building (26 MB each way)
PROGRESS_SECONDS = 10.0
ARRAY_NAMES = tuple(f"X_{name}" for name in SPLITS) + ("raw_test",)


class CacheSpaceError(TrainerError):
    """The disk has no room for the data cache."""


@dataclass
class TrainingData:
    """The cache: the arrays read by rows from their files (see the module docstring)."""

    splits: dict[str, Split]           # flux here is the preprocessed model input (a RowFile)
    raw_test: RowFile
    source_test: np.ndarray
    line_test: np.ndarray
    files: list[str]
    file_rows: list[int]               # data rows of each file, for stage 1's listing
    fingerprint: dict

    def inputs(self, split: str) -> RowFile:
        return self.splits[split].flux

    def labels(self, split: str) -> np.ndarray:
        return self.splits[split].label


def array_file(path: Path, build: str, name: str) -> Path:
    return Path(path).with_name(f"{Path(path).stem}.{build}.{name}.npy")


@contextlib.contextmanager
def scratch_file(path: Path, share=None):
    """A hidden file beside the cache ``path`` for the loaded curves while the cache is built;
    deleted when the block ends. One that a killed run left is deleted first (the run lock on
    the folder says no other run is using it).

    ``share``: this worker's ``shards.Share`` in a multi-worker job: the file is named by it, so
    that the other workers find it, and the chief has deleted any left over before (``remove_leftovers``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    job = share is not None and share.workers > 1
    if job:
        scratch = share.scratch_file(path)
    else:
        remove_stale_scratch(path)
        scratch = path.with_name(f".{path.stem}.loaded{atomic_io.TEMPORARY_MARK}{os.getpid()}.raw")
    try:
        yield scratch
    finally:
        scratch.unlink(missing_ok=True)
        if job:
            share.loaded_file(path).unlink(missing_ok=True)


def remove_stale_scratch(path: Path) -> None:
    """Delete the scratch files (``scratch_file``) that killed runs left beside the cache ``path``."""
    for stale in Path(path).parent.glob(f".{Path(path).stem}.loaded{atomic_io.TEMPORARY_MARK}*"):
        stale.unlink(missing_ok=True)


def remove_leftovers(path: Path, keep: TrainingData | None = None) -> list[Path]:
    """Delete the array files of the cache ``path`` that ``keep`` does not read (a crashed
    build's, a replaced cache's); without ``keep``, the index too."""
    path = Path(path)
    kept = {Path(p) for array in (*[split.flux for split in keep.splits.values()], keep.raw_test)
            for p in array.paths} if keep else set()
    removed = []
    for stale in path.parent.glob(f"{path.stem}.*.npy"):
        if stale not in kept:
            stale.unlink(missing_ok=True)
            removed.append(stale)
    if path.exists() and keep is None:
        atomic_io.remove(path)
        removed.append(path)
    return removed


class _CacheWriter:
    """The array files of one build, then the index that names them (module docstring).

    Use as ``with _CacheWriter(path, shapes) as writer``: the arrays are written through
    ``writer[name]``, then ``finish`` writes the index; leaving the block on an exception before
    that deletes the build's array files. A worker of a job writes its shard (``suffix``, with
    the job's common ``build`` name) and ``close``s it; the chief writes the index of them all.
    """

    def __init__(self, path: Path, shapes: dict[str, tuple], build: str | None = None, suffix: str = ""):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if build is None:  # a job's chief removed what was left before any worker began to write
            remove_leftovers(self.path)  # an out-of-date or damaged cache is of no use, and its disk space is needed
        check_room_for_cache(self.path, sum(4 * int(np.prod(s)) for s in shapes.values()))
        self.build = build or f"{int(time.time())}-{os.getpid()}"
        self.writers = {}
        self.finished = False
        try:
            for name, shape in shapes.items():
                self.writers[name] = RowFileWriter(array_file(self.path, self.build, name + suffix), shape, np.float32)
        except BaseException:
            self._abandon()
            raise

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is not None and not self.finished:
            self._abandon()
        return False

    def __getitem__(self, name: str) -> RowFileWriter:
        return self.writers[name]

    def _abandon(self) -> None:
        for writer in self.writers.values():
            writer.abandon()

    def close(self) -> dict[str, str]:
        """Flush the arrays to disk; returns their file names."""
        for writer in self.writers.values():
            writer.close()
        atomic_io.fsync_path(self.path.parent)
        self.finished = True
        return {name: writer.path.name for name, writer in self.writers.items()}

    def finish(self, splits: dict[str, Split], source_test, line_test, files, file_rows,
               fingerprint: dict) -> TrainingData:
        """Flush the arrays, then write the index atomically; returns the cache as ``load`` reads it."""
        names = self.close()
        write_index(self.path, names, splits, source_test, line_test, files, file_rows, fingerprint)
        return _open(self.path, names, splits, source_test, line_test, list(files), list(file_rows), fingerprint)


def write_index(path: Path, names: dict, splits: dict[str, Split], source_test, line_test, files, file_rows,
                fingerprint: dict, shards: list[dict] | None = None) -> None:
    """Write the index ``path`` (module docstring) atomically, naming the array files ``names``
    (a file, or a list of a job's shards, per array); ``shards`` records which worker made what."""
    labels = {f"y_{name}": np.asarray(split.label, dtype=np.int8) for name, split in splits.items()}
    rows = {f"index_{name}": np.asarray(split.index, dtype=np.int64) for name, split in splits.items()}
    copies = {f"augmented_{name}": np.asarray(split.augmented, dtype=bool) for name, split in splits.items()}
    extra = {} if shards is None else {"shards": np.array(json.dumps(shards, sort_keys=True))}
    atomic_io.write_npz(path, **labels, **rows, **copies,
                        source_test=np.asarray(source_test), line_test=np.asarray(line_test),
                        files=np.array(files, dtype=str), file_rows=np.array(file_rows, dtype=np.int64),
                        arrays=np.array(json.dumps(names, sort_keys=True)),
                        fingerprint=np.array(json.dumps(fingerprint, sort_keys=True)), **extra)


def _chunks(plan, name: str) -> list[tuple]:
    """The chunks stage 4 makes of split ``name``, in order: (rows of the loaded curves, their
    ``Copies`` or None): the split's own curves, then each kind of copy of that split."""
    sources = [(plan.rows[name], None)] + [(c.source, c) for c in plan.copies_of(name)]
    return [(rows[start:start + CHUNK_ROWS], copies) for rows, copies in sources
            for start in range(0, rows.size, CHUNK_ROWS)]


def _job_build_name(fingerprint: dict) -> str:
    """The build name every worker of a job gives its shard files: from what the cache is made of.
    (The chief deleted any cache files left before the workers began: stage 2.)"""
    return "job-" + fingerprints.digest(fingerprint)[:12]


def divide(sizes: list[int], workers: int) -> list[tuple[int, int]]:
    """Chunks of ``sizes`` rows in order, divided into ``workers`` contiguous runs of about equal
    rows: (first chunk, end chunk) of each run; a run may be empty.

    >>> divide([2048, 2048, 2048, 100], 2)
    [(0, 2), (2, 4)]
    """
    starts = np.concatenate([[0], np.cumsum(sizes)])
    bounds = [0] + [int(np.argmin(np.abs(starts - starts[-1] * j / workers))) for j in range(1, workers)] + [len(sizes)]
    return [(bounds[j], max(bounds[j], bounds[j + 1])) for j in range(workers)]


def build(path: Path, curves, plan, fingerprint: dict, config, share=None, synchronise=None) -> TrainingData:
    """Stage [4/7]: make the copies, preprocess every split and write the cache to ``path``.

    A chunk of curves at a time (``CHUNK_ROWS``): read from the loaded curves, copied and
    augmented (``plan``'s copies, in order), preprocessed, and written where they belong in the
    cache's array files; memory stays bounded whatever the number of curves. Logs a line every
    ``PROGRESS_SECONDS``.

    In a multi-worker job (``share``: this worker's ``shards.Share``) each worker makes a
    contiguous run of each split's chunks (``divide``) into files of its own, its shard, passing
    over the others' chunks without reading or making them (``Copies.skip`` keeps the random
    numbers in step): the arrays are the same bits as one process makes. Once every shard is
    written (``synchronise``: a barrier of the job), the chief writes the index, which names
    every shard and records which worker made which rows and loaded which files; then every
    worker reads it back.

    Args:
        path: the cache's index file (``training_data.npz``).
        curves: LoadedCurves (``flux`` a RowFile or an array of the raw curves).
        plan: ``augmentation.SplitPlan`` of those curves.
        fingerprint: from ``make_fingerprint``.
        config: PreprocessingConfig.
        share: ``shards.Share`` of a multi-worker job, or None.
        synchronise: returns once every worker of the job has called it (with ``share``).

    Returns:
        The cache, as ``load`` reads it.
    """
    from preprocessing import preprocess

    workers, me = (1, 0) if share is None else (share.workers, share.index)
    length = config.sequence_length
    splits = {name: plan.split(name) for name in SPLITS}
    chunks = {name: _chunks(plan, name) for name in SPLITS}
    runs = {name: divide([len(rows) for rows, _ in chunks[name]], workers) for name in SPLITS}

    def rows_of(name: str, worker: int) -> tuple[int, int]:
        first, end = runs[name][worker]
        before = sum(len(rows) for rows, _ in chunks[name][:first])
        return before, before + sum(len(rows) for rows, _ in chunks[name][first:end])

    mine = {name: rows_of(name, me) for name in SPLITS}
    shapes = {f"X_{name}": (stop - start, length, config.channels) for name, (start, stop) in mine.items()}
    shapes["raw_test"] = (mine["test"][1] - mine["test"][0], length)
    if workers > 1:
        shapes = {name: shape for name, shape in shapes.items() if shape[0]}  # no file for no rows
        build_name = _job_build_name(fingerprint)
    total = sum(stop - start for start, stop in mine.values())
    done, last_report, started = 0, time.perf_counter(), time.perf_counter()
    with _CacheWriter(path, shapes, *((build_name, share.suffix) if workers > 1 else ())) as writer:
        for name in SPLITS:
            first, end = runs[name][me]
            position = 0
            for number, (rows, copies) in enumerate(chunks[name]):
                if not first <= number < end:  # another worker's
                    if copies is not None:
                        copies.skip(len(rows))
                    continue
                flux = curves.flux.take(rows, axis=0)
                if copies is not None:
                    flux = copies.make(flux)
                elif name == "test":
                    writer["raw_test"].write(position, flux)
                writer[f"X_{name}"].write(position, preprocess(flux, config))
                position += len(flux)
                done += len(flux)
                if time.perf_counter() - last_report > PROGRESS_SECONDS:
                    last_report = time.perf_counter()
                    log.info("  preprocessed %d of %d curves (%.0f%%, %s), %.0f s", done, total,
                             100 * done / total, copies.kind if copies else f"{name} split", last_report - started)
        test = plan.rows["test"]
        index = (splits, curves.source[test], curves.line[test], curves.files, [r["rows"] for r in curves.report],
                 fingerprint)
        if workers == 1:
            data = writer.finish(*index)
        else:
            writer.close()
    if workers > 1:
        synchronise()  # every shard is on disk
        if share.is_chief:
            names, records = {}, []
            for worker, record in enumerate(shards.records(share, curves)):
                record = dict(record, rows={})
                for name in SPLITS:
                    start, stop = rows_of(name, worker)
                    record["rows"][f"X_{name}"] = [start, stop]
                    if name == "test":
                        record["rows"]["raw_test"] = [start, stop]
                for array, (start, stop) in record["rows"].items():
                    if stop > start:
                        suffix = share.suffix_of(worker)
                        names.setdefault(array, []).append(array_file(path, build_name, array + suffix).name)
                records.append(record)
            write_index(path, names, *index, shards=records)
        synchronise()  # the index is written
        data = load(path, fingerprint)
        if data is None:
            raise TrainerError(f"the data cache {path} that the workers prepared cannot be read back (above); "
                               "rerun the job to prepare it again")
    release_freed_memory()
    return data


def save(path: Path, data) -> TrainingData:
    """Write an in-memory split (``TrainingData`` of arrays) as the cache; returns it as read back."""
    shapes = {f"X_{name}": np.shape(split.flux) for name, split in data.splits.items()}
    shapes["raw_test"] = np.shape(data.raw_test)
    with _CacheWriter(path, shapes) as writer:
        for name, split in data.splits.items():
            writer[f"X_{name}"].write(0, np.asarray(split.flux, np.float32))
        writer["raw_test"].write(0, np.asarray(data.raw_test, np.float32))
        return writer.finish({name: dataclasses.replace(split) for name, split in data.splits.items()},
                             data.source_test, data.line_test, data.files, data.file_rows, data.fingerprint)


def _open(path: Path, names: dict[str, str], splits: dict[str, Split], source_test, line_test, files, file_rows,
          fingerprint) -> TrainingData:
    """The cache with its arrays opened from their files (checked against the index's rows).

    Raises:
        ValueError, OSError: an array file is missing, damaged, or of other rows than the index.
    """
    # One file per array, or (a multi-worker job's cache) the shard of each worker, in order.
    arrays = {name: RowFile.open_npy(path.with_name(names[name])) if isinstance(names[name], str) else
              RowFiles([RowFile.open_npy(path.with_name(shard)) for shard in names[name]])
              for name in ARRAY_NAMES}
    for name, split in splits.items():
        split.flux = arrays[f"X_{name}"]
        if not (len(split.flux) == len(split.label) == len(split.index) == len(split.augmented)):
            raise ValueError(f"the {name} split's arrays differ in length")
    if len(arrays["raw_test"]) != len(splits["test"]):
        raise ValueError("raw_test and the test split differ in length")
    return TrainingData(splits=splits, raw_test=arrays["raw_test"], source_test=source_test, line_test=line_test,
                        files=files, file_rows=file_rows, fingerprint=fingerprint)


def make_fingerprint(file_identities: list[dict], preprocessing, split, seed: int,
                     labels: dict | None = None) -> dict:
    """What the cached arrays depend on; compared key by key on the next run.

    ``labels``: the labels table's identity (``LabelsTable.identity``), when one labels the
    files. Made through JSON, as the cache stores it, so tuples in the settings compare as the
    lists they come back as.
    """
    fingerprint = {
        "format": CACHE_FORMAT,
        "files": file_identities,
        "preprocessing": preprocessing.fingerprint(),
        "split": split.fingerprint(),
        "seed": seed,
    }
    if labels is not None:
        fingerprint["labels"] = labels
    return json.loads(json.dumps(fingerprint))


# What reading a missing, truncated, overwritten or foreign cache index raises.
_UNREADABLE = (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile, json.JSONDecodeError)


def known_row_counts(path: Path) -> dict[tuple, int]:
    """Data rows of each file the cache was made from, keyed by file identity; reads nothing else.

    Lets stage 1 list row counts without reading unchanged CSV files again. Empty if the cache
    is absent or unreadable.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            fingerprint = json.loads(str(archive["fingerprint"]))
            rows = archive["file_rows"]
        return {tuple(sorted(f.items())): int(n) for f, n in zip(fingerprint["files"], rows)}
    except _UNREADABLE:
        return {}


def saved_fingerprint(path: Path) -> dict | None:
    """The fingerprint the cache was made from, or None if it is absent or unreadable; reads nothing else."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return json.loads(str(archive["fingerprint"]))
    except _UNREADABLE:
        return None


def load(path: Path, expected: dict) -> TrainingData | None:
    """The cached data if it matches ``expected``; otherwise None, with one line saying why."""
    path = Path(path)
    if not path.exists():
        log.info("No saved training data in %s - building it", path)
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            fingerprint = json.loads(str(archive["fingerprint"]))
            if fingerprint != expected:
                log.info("Saved training data is out of date (%s) - rebuilding",
                         fingerprints.describe(fingerprint, expected))
                return None
            log.info("Found saved training data - loading %s", path)
            splits = {}
            for name in SPLITS:
                label = archive[f"y_{name}"]
                augmented = (archive[f"augmented_{name}"] if f"augmented_{name}" in archive.files
                             else np.zeros(label.size, bool))
                splits[name] = Split(flux=None, label=label, index=archive[f"index_{name}"], augmented=augmented)
            if "arrays" not in archive.files:
                log.info("Saved training data %s is in the single-file layout of earlier versions - rebuilding it "
                         "as array files read by rows", path)
                return None
            names = json.loads(str(archive["arrays"]))
            data = _open(path, names, splits, archive["source_test"], archive["line_test"],
                         [str(f) for f in archive["files"]], [int(n) for n in archive["file_rows"]], fingerprint)
    except _UNREADABLE as error:
        log.warning("Saved training data %s is damaged (%s) - rebuilding it", path,
                    str(error).splitlines()[0][:120] or type(error).__name__)
        return None
    return data


def check_room_for_cache(path: Path, size: int) -> None:
    """Stop before writing the cache if it and the checkpoint headroom will not fit beside it.

    Raises:
        CacheSpaceError: naming the folder, what is free and what is needed.
    """
    from checkpoint_callback import DISK_HEADROOM_BYTES, free_space_if_short

    free = free_space_if_short(path.parent, size)
    if free is not None:
        raise CacheSpaceError(f"only {free / 1e6:.0f} MB free in {path.parent}; the preprocessed data cache "
                              f"{path.name} needs {size / 1e6:.0f} MB and the checkpoints about "
                              f"{DISK_HEADROOM_BYTES / 1e6:.0f} MB more: free some space, or give --checkpoint-dir "
                              f"a disk with room, and rerun")
