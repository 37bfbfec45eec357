"""The cached, preprocessed data split: ``checkpoints/training_data.npz``.

Parsing, splitting and preprocessing thousands of curves takes a while; a rerun (after an
interruption, say) loads this file instead. It holds:

    X_train, X_val, X_test   float32 [rows, sequence_length, 1]   model inputs
    y_train, y_val, y_test   int8 [rows]                          1 = planet host, 0 = not
    index_train/val/test     int64 [rows]   row of the original curve in the loaded data
    augmented_train          bool [rows]    row is a transformed copy of a training host
    raw_test                 float32 [rows, sequence_length]      test curves before preprocessing
    source_test, line_test   file index and line of each test curve; ``files`` the file names
    fingerprint              JSON text: the inputs it was made from

The fingerprint lists every data file (relative name, size, modification time) and every
setting that shapes the arrays (preprocessing, split, seed, format version). When any of them
differs, the cache is rebuilt with one line saying what changed; a damaged file is rebuilt with
one line saying so. Written atomically; read without pickles (``StoredNpz`` refuses object arrays).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import atomic_io
import fingerprints
from augmentation import SPLITS, Split
from errors import TrainerError
from memory import aligned_empty, release_freed_memory

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


class CacheSpaceError(TrainerError):
    """The disk has no room for the data cache."""


@dataclass
class TrainingData:
    """The arrays of the cache (see the module docstring)."""

    splits: dict[str, Split]           # flux here is the preprocessed model input
    raw_test: np.ndarray
    source_test: np.ndarray
    line_test: np.ndarray
    files: list[str]
    file_rows: list[int]               # data rows of each file, for stage 1's listing
    fingerprint: dict

    def inputs(self, split: str) -> np.ndarray:
        return self.splits[split].flux

    def labels(self, split: str) -> np.ndarray:
        return self.splits[split].label


def build(curves, splits: dict[str, Split], fingerprint: dict, config) -> TrainingData:
    """Stage [4/7]: preprocess every split into model inputs; keeps the raw test curves too.

    Each split's float32 flux is preprocessed in place: the splits are copies cut from the
    loaded curves, and holding raw and preprocessed curves at once would double the memory.

    Args:
        curves: LoadedCurves the splits were cut from (for the test curves' file and line).
        splits: train/val/test Splits of raw (loaded) flux; their flux is overwritten.
        fingerprint: from ``make_fingerprint``.
        config: PreprocessingConfig.
    """
    from preprocessing import preprocess

    raw_test = splits["test"].flux.astype(np.float32, copy=True)
    processed = {}
    for name, split in splits.items():
        flux = split.flux
        in_place = flux.dtype == np.float32 and flux.flags.c_contiguous and flux.flags.writeable
        inputs = preprocess(flux, config, out=flux.reshape(flux.shape + (1,)) if in_place else None)
        processed[name] = Split(flux=inputs, label=split.label.astype(np.int8), index=split.index.astype(np.int64),
                                augmented=split.augmented)
    release_freed_memory()
    test_rows = splits["test"].index
    return TrainingData(splits=processed, raw_test=raw_test, source_test=curves.source[test_rows],
                        line_test=curves.line[test_rows], files=list(curves.files),
                        file_rows=[r["rows"] for r in curves.report], fingerprint=fingerprint)


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
        "split": dataclasses.asdict(split),
        "seed": seed,
    }
    if labels is not None:
        fingerprint["labels"] = labels
    return json.loads(json.dumps(fingerprint))


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
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile, json.JSONDecodeError):
        return {}


class StoredNpz:
    """Read the arrays of an uncompressed .npz (``np.savez``) straight into aligned buffers.

    ``np.load`` pipes every member through zipfile's CRC check into an unaligned array, which
    training then copies again to align it: together 1.2 s of the 6 s a resume took at the
    seed's scale. A stored member is one run of bytes in the file, read here with one
    ``readinto``. No pickles: object arrays are refused. Use as ``with StoredNpz(path) as a:
    a["X_train"]``.

    Raises (on access):
        ValueError: a member is compressed, truncated, not a .npy array, or holds objects.
        KeyError: no such member.
    """

    _HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}

    def __init__(self, path: Path):
        self.path = Path(path)

    def __enter__(self):
        self.archive = zipfile.ZipFile(self.path)
        self.raw = open(self.path, "rb")
        return self

    def __exit__(self, *exc):
        self.raw.close()
        self.archive.close()
        return False

    def __getitem__(self, name: str) -> np.ndarray:
        info = self.archive.getinfo(f"{name}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"member {name} is compressed; the cache is written uncompressed")
        self.raw.seek(info.header_offset)
        local = self.raw.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise ValueError(f"member {name}: bad zip entry")
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        self.raw.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(self.raw)
        if version not in self._HEADER_READERS:
            raise ValueError(f"member {name}: .npy format {version} is not read here")
        shape, fortran_order, dtype = self._HEADER_READERS[version](self.raw)
        if dtype.hasobject or fortran_order:
            raise ValueError(f"member {name}: object or Fortran-ordered arrays are not allowed")
        array = aligned_empty(shape, dtype)
        wanted = array.nbytes
        if wanted and self.raw.readinto(memoryview(array.reshape(-1).view(np.uint8))) != wanted:
            raise ValueError(f"member {name} is truncated")
        return array


def load(path: Path, expected: dict) -> TrainingData | None:
    """The cached data if it matches ``expected``; otherwise None, with one line saying why."""
    path = Path(path)
    if not path.exists():
        log.info("No saved training data in %s - building it", path)
        return None
    try:
        with StoredNpz(path) as archive:
            fingerprint = json.loads(str(archive["fingerprint"]))
            if fingerprint != expected:
                log.info("Saved training data is out of date (%s) - rebuilding",
                         fingerprints.describe(fingerprint, expected))
                return None
            log.info("Found saved training data - loading %s", path)
            splits = {}
            for name in SPLITS:
                label = archive[f"y_{name}"]
                augmented = archive["augmented_train"] if name == "train" else np.zeros(label.size, bool)
                splits[name] = Split(flux=archive[f"X_{name}"], label=label,
                                     index=archive[f"index_{name}"], augmented=augmented)
            data = TrainingData(splits=splits, raw_test=archive["raw_test"], source_test=archive["source_test"],
                                line_test=archive["line_test"], files=[str(f) for f in archive["files"]],
                                file_rows=[int(n) for n in archive["file_rows"]], fingerprint=fingerprint)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as error:
        log.warning("Saved training data %s is damaged (%s) - rebuilding it", path,
                    str(error).splitlines()[0][:120] or type(error).__name__)
        return None
    for name, split in splits.items():
        if not (len(split.flux) == len(split.label) == len(split.index) == len(split.augmented)):
            log.warning("Saved training data %s is inconsistent (%s split) - rebuilding it", path, name)
            return None
    return data


def save(path: Path, data: TrainingData) -> None:
    """Write the cache atomically (a crash leaves the old file or none, never half a file)."""
    arrays = {}
    for name, split in data.splits.items():
        arrays[f"X_{name}"] = split.flux
        arrays[f"y_{name}"] = split.label
        arrays[f"index_{name}"] = split.index
    arrays["augmented_train"] = data.splits["train"].augmented
    arrays["raw_test"] = data.raw_test
    arrays["source_test"] = data.source_test
    arrays["line_test"] = data.line_test
    arrays["files"] = np.array(data.files, dtype=str)
    arrays["file_rows"] = np.array(data.file_rows, dtype=np.int64)
    arrays["fingerprint"] = np.array(json.dumps(data.fingerprint, sort_keys=True))
    check_room_for_cache(path, sum(array.nbytes for array in arrays.values()))
    atomic_io.write_npz(path, **arrays)


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
