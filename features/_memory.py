"""Keep freed memory for reuse while a build runs (glibc only).

A feature build allocates and frees hundreds of arrays of one column each. glibc's malloc
serves an allocation above its mmap threshold with a fresh mapping and unmaps it on free,
so the next array of the same size is faulted in again, page by page. The threshold adapts
to the sizes a process frees, but only up to 32 MiB: a column of a million rows (8 MB) is
reused from the heap, while a column of five million rows (40 MB) is mapped afresh every
time. Computing the 76 features of 4.9M transactions on this project's 2-core machine
(three runs in a process, twice, alternating): 1.74-1.77 million page faults and 16.6-18.5 s
per run as glibc behaves by default; 0.2-0.85 million faults (740,000 pages are the
output columns themselves) and 10.9-16.3 s with the threshold raised. At 1M rows the two
measure the same.

:func:`reuse_freed_memory` raises the threshold for the duration of a build, so freed
columns go back to the heap and are reused. Afterwards it sets the threshold to 32 MiB
(the most glibc's own adaptation reaches; ``mallopt`` cannot switch the adaptation back
on) and returns the heap's free pages to the system with ``malloc_trim``. On other C
libraries it does nothing.

The feature columns themselves are new memory that a build keeps: 2.8 GB at 4.9M rows. A
page's first write costs far more than the write (the kernel zeroes the page, and on a
virtual machine whose host takes freed memory back, the host faults it in again). The
first build of a process at 4.9M rows spent 6-8 s of system time on page faults, against
0.3-0.5 s at 1M. :class:`OutputRows` allocates every float column of a build as one block
and faults its pages in on a background thread, ahead of the feature computed next, with
``madvise(MADV_POPULATE_WRITE)``, while the build runs on the other core. On other
systems the block is allocated as usual and faulted in by the writes.
"""

from __future__ import annotations

import ctypes
import mmap
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_BUILD_THRESHOLD = 2**31 - 1  # the largest C int: every array below 2 GB from the heap
_DEFAULT_MAX = 32 << 20  # glibc's largest dynamic mmap threshold on 64-bit systems
_lock = threading.Lock()
_depth = 0
_libc = None


def _glibc():
    global _libc
    if _libc is None:
        _libc = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                lib = ctypes.CDLL("libc.so.6")
                lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                lib.malloc_trim.argtypes = [ctypes.c_size_t]
                lib.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                _libc = lib
            except (OSError, AttributeError):
                pass
    return _libc or None


@contextmanager
def reuse_freed_memory() -> Iterator[None]:
    """Within the block, large freed arrays stay in the heap for reuse (nests, thread-safe)."""
    global _depth
    libc = _glibc()
    if libc is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            libc.mallopt(_M_MMAP_THRESHOLD, _BUILD_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, _BUILD_THRESHOLD)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, _DEFAULT_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, 2 * _DEFAULT_MAX)
                libc.malloc_trim(0)


_MADV_NOHUGEPAGE = 15
_MADV_POPULATE_WRITE = 23  # Linux 5.14 and later; EINVAL before
_PIECE = 64 << 20  # bytes faulted in per call (the thread needs the GIL between calls)
_MIN_BYTES = 16 << 20  # smaller blocks are faulted in by the writes alone
_PAGE = mmap.PAGESIZE


class OutputRows:
    """A new ``(n_rows, n_cols)`` float64 array, handed out a row at a time, whose rows are
    faulted in ahead of use by a background thread (glibc on Linux; elsewhere a plain
    array; no thread below 16 MB).

    The thread walks the rows in order and skips those already written (a row counts as
    written once the next one is taken), so it works on the row being computed and those
    after it. Faulting in does not write, so it never races the values written into a row.

    Measured on this project's 2-core machine, in fresh processes that each built the 76
    features three times, alternating with and without the thread: at 4.9M rows the first
    build took 8.7-11.0 s with it and 12.0-12.6 s without, the best of three 8.3-9.0 s and
    9.7-10.0 s (three processes each); at 1M rows the first build took 1.32-1.37 s and
    2.24-2.50 s, the best of three 1.18-1.27 s and 1.12-1.20 s (four each).

    The block asks for small pages. Written in order, it gains little from huge ones, and
    a huge page is new memory to this machine's host every time (the guest hands free 2 MB
    blocks back to it): a process's first build at 1M rows took 1.27-1.45 s with small
    pages and 2.17-2.28 s with huge ones (four processes each, alternating), at 4.9M rows
    8.0-8.5 s and 8.9-10.9 s. Later builds in the same process were a little faster with
    huge pages at 4.9M rows (7.4-7.6 s against 7.8-8.0 s); the first build is the one a
    command-line build or a retraining job runs.

    Use as a context manager; leaving it stops the thread. The rows stay valid after.
    """

    def __init__(self, n_rows: int, n_cols: int):
        self.array = np.empty((n_rows, n_cols))
        self.populated = 0  # rows the thread faulted in whole
        self._taken = 0
        self._stop = False
        self._thread = None
        libc = _glibc()
        if libc is None or self.array.nbytes < _MIN_BYTES:
            return
        self._libc = libc
        start, end = self._pages(0, self.array.nbytes)
        libc.madvise(start, end - start, _MADV_NOHUGEPAGE)
        self._thread = threading.Thread(target=self._fault_in, name="fraudlab-prefault",
                                        daemon=True)
        self._thread.start()

    def _pages(self, lo: int, hi: int) -> tuple[int, int]:
        """The whole pages inside bytes [lo, hi) of the block, as addresses."""
        base = self.array.ctypes.data
        return (base + lo + _PAGE - 1) // _PAGE * _PAGE, (base + hi) // _PAGE * _PAGE

    def _fault_in(self) -> None:
        row_bytes = self.array.strides[0]
        for k in range(self.array.shape[0]):
            a, end = self._pages(k * row_bytes, (k + 1) * row_bytes)
            while a < end:
                if self._stop or self._taken > k + 1:  # written, and the next row taken
                    break
                n = min(_PIECE, end - a)
                if self._libc.madvise(a, n, _MADV_POPULATE_WRITE) != 0:
                    return  # not supported here: the writes fault the pages in
                a += n
            else:
                self.populated += 1

    def take(self) -> np.ndarray:
        """The next row (a view into the block)."""
        row = self.array[self._taken]
        self._taken += 1
        return row

    def wait(self) -> None:
        """Wait until the thread is done (it stops at the last row)."""
        if self._thread is not None:
            self._thread.join()

    def close(self) -> None:
        self._stop = True
        self.wait()

    def __enter__(self) -> OutputRows:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
