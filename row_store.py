"""Arrays on disk, read and written by rows: the data cache's storage, whatever the data size.

A ``RowFile`` is a C-ordered array in a file (a ``.npy`` file, or bare rows from offset 0) that
reads the rows asked for with ``os.pread`` and nothing else. It is never memory-mapped: pages of
a mapping count in the process's resident memory for as long as they stay mapped, so an epoch
over a mapped 10 GB cache would show a 10 GB process; read rows live only as long as the batch
that holds them, and the kernel's page cache (not the process) keeps what is read often.

It answers the parts of the ndarray interface the stages use: ``len``, ``shape``, ``dtype``,
``[i]``, ``[start:stop]``, ``take(rows, axis=0)`` and ``np.asarray`` (the whole array, for small
data and tests). ``RowFiles`` reads several such files as one array (the shards that the workers of
a job prepared). ``RowFileWriter`` creates a ``.npy`` file of a known shape and writes rows at
any position, so curves can be written to where they belong as they are made.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from memory import aligned_empty


def _row_numbers(rows, axis: int, length: int) -> np.ndarray:
    """``take``'s row numbers, checked and made non-negative, as ``ndarray.take`` reads them."""
    if axis != 0:
        raise ValueError("rows are read whole: axis must be 0")
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if rows.size and (rows.min() < -length or rows.max() >= length):
        raise IndexError(f"row index out of range for {length} rows")
    return np.where(rows < 0, rows + length, rows)


class RowFile:
    """Read-only rows of an array stored in ``path`` from byte ``offset`` (see the module docstring)."""

    def __init__(self, path: Path, shape: tuple, dtype, offset: int = 0):
        self.path, self.shape, self.dtype, self.offset = Path(path), tuple(int(s) for s in shape), np.dtype(dtype), offset
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.nbytes = self.shape[0] * self.row_bytes
        self._fd = None

    @classmethod
    def open_npy(cls, path: Path) -> "RowFile":
        """The array of a ``.npy`` file, checked: no objects, C order, and the file holds every row.

        Raises:
            ValueError: the file is not such an array, or is shorter than its header says.
            OSError: it cannot be read.
        """
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f".npy format {version} is not read here")
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(handle)
            offset = handle.tell()
        if dtype.hasobject or fortran_order or len(shape) < 1:
            raise ValueError("object, Fortran-ordered or 0-d arrays are not allowed")
        array = cls(path, shape, dtype, offset)
        size = os.stat(path).st_size
        if size != offset + array.nbytes:
            raise ValueError(f"{size:,} bytes where the header says {offset + array.nbytes:,} (truncated or extended)")
        return array

    @property
    def paths(self) -> list[Path]:
        return [self.path]

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"RowFile({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def _descriptor(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        self.close()

    def _read_into(self, out: np.ndarray, first_row: int) -> None:
        wanted = out.nbytes
        if not wanted:
            return
        data = os.pread(self._descriptor(), wanted, self.offset + first_row * self.row_bytes)
        if len(data) != wanted:
            raise OSError(f"{self.path}: rows {first_row}-{first_row + len(out) - 1} are past the end of the file "
                          "(it was truncated while in use)")
        out.reshape(-1).view(np.uint8)[:] = np.frombuffer(data, np.uint8)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start`` to ``stop - 1`` as a new (64-byte aligned) array."""
        start, stop, _ = slice(start, stop).indices(len(self))
        out = aligned_empty((max(stop - start, 0),) + self.row_shape, self.dtype)
        self._read_into(out, start)
        return out

    def take(self, rows, axis: int = 0) -> np.ndarray:
        """The given rows, in the given order (repeats allowed), as a new array; as ``ndarray.take``."""
        rows = _row_numbers(rows, axis, len(self))
        out = aligned_empty((rows.size,) + self.row_shape, self.dtype)
        # One read per run of consecutive rows: a sorted selection reads almost sequentially.
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for first, last in zip(np.r_[0, breaks], np.r_[breaks, rows.size]):
            self._read_into(out[first:last], int(rows[first]))
        return out

    def __getitem__(self, key):
        if isinstance(key, slice):
            if key.step not in (None, 1):
                return self.take(np.arange(len(self))[key])
            return self.read(key.start, key.stop)
        if isinstance(key, (int, np.integer)):
            return self.take([key])[0]
        return self.take(key)

    def __array__(self, dtype=None, copy=None):
        whole = self.read(0, len(self))
        return whole if dtype is None else whole.astype(dtype)


class RowFiles:
    """Several ``RowFile``s of one row shape and dtype read as one array, their rows one after another.

    A cache prepared by the workers of a job is one file per worker for each array (its shard);
    the rows of the job's loaded curves, one scratch file per worker. Same interface as ``RowFile``.
    """

    def __init__(self, parts: list[RowFile]):
        if not parts:
            raise ValueError("RowFiles needs at least one file")
        first = parts[0]
        for part in parts[1:]:
            if part.row_shape != first.row_shape or part.dtype != first.dtype:
                raise ValueError(f"{part.path}: rows of {part.dtype} {part.row_shape}, not {first.dtype} "
                                 f"{first.row_shape} as in {first.path}")
        self.parts, self.row_shape, self.dtype = list(parts), first.row_shape, first.dtype
        self.starts = np.cumsum([0] + [len(part) for part in parts])
        self.shape = (int(self.starts[-1]),) + self.row_shape
        self.nbytes = sum(part.nbytes for part in parts)

    @property
    def paths(self) -> list[Path]:
        return [part.path for part in self.parts]

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"RowFiles({[str(p) for p in self.paths]!r}, shape={self.shape}, dtype={self.dtype})"

    def close(self) -> None:
        for part in self.parts:
            part.close()

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop, _ = slice(start, stop).indices(len(self))
        return self.take(np.arange(start, stop))

    def take(self, rows, axis: int = 0) -> np.ndarray:
        """The given rows, in the given order, as ``RowFile.take``; each file reads its own."""
        rows = _row_numbers(rows, axis, len(self))
        which = np.searchsorted(self.starts, rows, side="right") - 1
        if rows.size and (which == which[0]).all():
            return self.parts[which[0]].take(rows - self.starts[which[0]])
        out = aligned_empty((rows.size,) + self.row_shape, self.dtype)
        for number in np.unique(which):
            mine = which == number
            out[mine] = self.parts[number].take(rows[mine] - self.starts[number])
        return out

    __getitem__ = RowFile.__getitem__
    __array__ = RowFile.__array__


class RowFileWriter:
    """A new ``.npy`` file of a known shape and dtype, written by rows at any position.

    The file is created at its full size (unwritten rows read as zeros) and its header written
    first, so it is a valid ``.npy`` file whose rows fill as they are written. ``close`` flushes
    it to disk (fsync); the caller renames it into place (``atomic_io``).
    """

    def __init__(self, path: Path, shape: tuple, dtype):
        self.path, self.shape, self.dtype = Path(path), tuple(int(s) for s in shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.handle = open(self.path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        try:
            np.lib.format.write_array_header_1_0(self.handle, header)
        except ValueError:  # a header over 64 KiB: many dimensions
            np.lib.format.write_array_header_2_0(self.handle, header)
        self.handle.flush()
        self.offset = self.handle.tell()
        os.ftruncate(self.handle.fileno(), self.offset + self.shape[0] * self.row_bytes)

    def write(self, start: int, rows: np.ndarray) -> None:
        """Write ``rows`` (of this file's row shape) as rows ``start`` onwards."""
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:] or start < 0 or start + len(rows) > self.shape[0]:
            raise ValueError(f"{self.path}: cannot write {rows.shape} at row {start} of {self.shape}")
        view = memoryview(rows.reshape(-1).view(np.uint8))
        position = self.offset + start * self.row_bytes
        while view:
            written = os.pwrite(self.handle.fileno(), view, position)
            view, position = view[written:], position + written

    def close(self) -> None:
        """Flush the file to disk and close it."""
        if not self.handle.closed:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()

    def abandon(self) -> None:
        """Close and delete the unfinished file."""
        if not self.handle.closed:
            self.handle.close()
        self.path.unlink(missing_ok=True)

