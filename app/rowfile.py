"""Large index files read a few rows at a time with `os.pread`, never memory-mapped.

At a million passages the vectors and records are ~5 GB on disk, and a question reads a few hundred scattered
rows of them. Memory-mapped, each row touched also mapped its neighbours (the kernel's fault-around), so the
process's RSS grew by ~25 MB a question towards the size of the files. Read with pread, the bytes stay in the
page cache, which the kernel shares and reclaims, and the process holds only the rows it asked for.
"""

from __future__ import annotations

import math
import os
import weakref
from pathlib import Path

import numpy as np

READ_BYTES = 1 << 28  # one pread reads at most this much (Linux caps a read near 2 GB)


class OpenFile:
    """A read-only file descriptor for positional reads from many threads at once (pread has no shared
    file position); closed when the object is collected."""

    def __init__(self, path: Path) -> None:
        self.size = os.stat(path).st_size
        self._fd = os.open(path, os.O_RDONLY)
        weakref.finalize(self, os.close, self._fd)

    def read_into(self, buffer: memoryview, offset: int) -> None:
        done = 0
        while done < len(buffer):
            got = os.preadv(self._fd, [buffer[done:done + READ_BYTES]], offset + done)
            if got == 0:
                raise ValueError("the file ends before its header says")
            done += got

    def read(self, offset: int, length: int) -> bytearray:
        buffer = bytearray(length)
        self.read_into(memoryview(buffer), offset)
        return buffer


class RowFile:
    """A C-ordered .npy array of numbers whose rows are read on demand: `f[i]`, `f[a:b]`, `f[[i, j, k]]` and
    `np.asarray(f)` give arrays, as on the array itself. Object arrays (pickles) are refused."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(handle)
            self._offset = handle.tell()
        if dtype.hasobject or fortran or not shape:
            raise ValueError(f"{path.name} is not a C-ordered array of numbers")
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype = dtype
        self.ndim = len(shape)
        self._row_bytes = dtype.itemsize * math.prod(shape[1:])
        self._file = OpenFile(path)
        if self._file.size < self._offset + self._row_bytes * shape[0]:
            raise ValueError(f"{path.name} is shorter than its header says")

    def __len__(self) -> int:
        return self.shape[0]

    def _rows(self, start: int, count: int) -> np.ndarray:
        out = np.empty((count, *self.shape[1:]), self.dtype)
        self._file.read_into(memoryview(out.reshape(-1).view(np.uint8)), self._offset + start * self._row_bytes)
        return out

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                return self._rows(start, max(stop - start, 0))
            return self[np.arange(start, stop, step)]
        if isinstance(key, (int, np.integer)):
            row = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= row < len(self):
                raise IndexError(key)
            return self._rows(row, 1)[0]
        rows = np.asarray(key, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        for i, row in enumerate(rows):
            out[i] = self[int(row)]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self._rows(0, len(self))
        return whole if dtype is None else whole.astype(dtype)
