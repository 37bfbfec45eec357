"""Low-level memory and CPU helpers: aligned buffers, the cores to use, returning freed memory.

Shared by the data stages (parse, augment, preprocess, the cache) and the epoch runner; they
know nothing of light curves or models.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

import numpy as np


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def release_freed_memory() -> None:
    """Hand memory freed after parsing and preprocessing back to the system.

    glibc keeps freed heap pages for reuse and Arrow's allocator keeps its pool; neither is
    used again before training, so together they would stay in the run's peak (0.2 GB at the
    seed's scale). A no-op without glibc or Arrow.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].default_memory_pool().release_unused()


def aligned_empty(shape, dtype, alignment: int = 64) -> np.ndarray:
    """An uninitialised C-ordered array whose data starts on an ``alignment``-byte boundary.

    TensorFlow can share (not copy) a NumPy buffer only if it is 64-byte aligned, which NumPy
    does not promise for its own allocations.
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buffer = np.empty(size + alignment, dtype=np.uint8)
    # An ndarray over the buffer at an offset (a slice would lose the offset when empty).
    return np.ndarray(shape, dtype, buffer=buffer, offset=-buffer.ctypes.data % alignment)
