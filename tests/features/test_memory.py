import platform
import resource

import numpy as np
import pytest

from fraudlab.features._memory import reuse_freed_memory

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the heap settings exist only in glibc")

N = 6_000_000  # 48 MB: above glibc's largest automatic mmap threshold (32 MiB)


def _faults_of_a_second_column() -> int:
    """Page faults taken by filling a new column right after an equal one was freed."""
    first = np.empty(N)
    first.fill(1.0)
    del first
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    second = np.empty(N)
    second.fill(2.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.fixture
def small_pages():
    """4 KiB pages only, so a fault count measures how much memory was new."""
    from numpy._core.multiarray import _set_madvise_hugepage

    was = _set_madvise_hugepage(False)
    yield
    _set_madvise_hugepage(was)


def test_a_freed_column_is_reused_inside_and_returned_after(small_pages):
    outside = _faults_of_a_second_column()
    with reuse_freed_memory(), reuse_freed_memory():  # nested, as build_dataset does
        inside = _faults_of_a_second_column()
    after = _faults_of_a_second_column()
    pages = N * 8 // 4096
    assert outside > pages // 2  # a fresh mapping, faulted in page by page
    assert inside < pages // 20  # the freed column's pages, reused
    assert after > pages // 2  # glibc's own threshold is back


def _populate_supported() -> bool:
    major, minor = (int(x) for x in platform.release().split(".")[:2])
    return (major, minor) >= (5, 14)  # MADV_POPULATE_WRITE


def test_output_rows_are_faulted_in_ahead_and_keep_what_is_written():
    """Rows taken while the thread runs keep the values written into them; rows left
    alone are faulted in by the thread."""
    from fraudlab.features._memory import OutputRows

    n_rows, n_cols = 12, 1 << 20  # 96 MB: the thread starts
    with OutputRows(n_rows, n_cols) as block:
        for k in range(4):
            row = block.take()
            row[:] = np.arange(n_cols) * (k + 1)
        block.wait()
        assert block.populated >= (n_rows - 5 if _populate_supported() else 0)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for k in range(4, n_rows):
            block.take()[:] = k + 1
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    if _populate_supported():  # already there: writing them faulted in (almost) nothing
        assert faults < (n_rows - 4) * n_cols * 8 // 4096 // 10
    for k in range(4):
        np.testing.assert_array_equal(block.array[k], np.arange(n_cols) * (k + 1))
    for k in range(4, n_rows):
        assert (block.array[k] == k + 1).all()
