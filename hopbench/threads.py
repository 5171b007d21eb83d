"""The thread budget: how many CPU threads torch, LAPACK and BLAS may use, set in one place.

torch on CPU runs its intra-op work and MKL's LAPACK on OpenMP threads. Two facts decide how hopbench sets
them (both measured on torch 2.13's CPU build, see ``tests/test_threads.py``):

- ``torch.set_num_threads(n)`` with n ≥ 2 leaves MKL in a state where a later batched
  ``torch.linalg.solve_ex`` (N ≥ ~200) fails with "Pivots given to lu_solve …" or hangs. hopbench never calls
  it. The budget is set through threadpoolctl instead (``omp_set_num_threads`` for torch and MKL, the BLAS
  library's own call for numpy/scipy), which does not touch MKL's state.
- OpenMP threads spin-wait for work. On small problems (N of a few hundred) a second thread gains nothing,
  and on cores shared with another process the spinning slows a job down many times. ``auto`` gives
  problems below :data:`SMALL_PROBLEM` neurons one thread (``make bench``, threads case, numbers there).

A job sets its budget once (:func:`job_budget`); a launcher running several jobs on one machine passes
``threads=k`` so that jobs × threads ≤ cores. :func:`map_chunks` is the one place that runs work on several
Python threads (a batch of LAPACK calls split over the budget, each worker single-threaded).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache

import torch
from threadpoolctl import ThreadpoolController
from torch import Tensor

__all__ = ["SMALL_PROBLEM", "available_cores", "budget", "choose", "job_budget", "map_chunks"]

#: ``threads=auto`` gives one thread to problems with fewer neurons than this. Measured by ``make bench``
#: (threads case) on the 2-core development machine, shared with other jobs throughout (its CPU 80–100 % busy
#: before each measurement), one thread against two, medians of 3:
#:
#: - a retrieval batch (``integrate``, 256 cues, α = 0.05): two threads slower at every N from 32 to 1024,
#:   1.6–270× with OpenMP's default (spinning) waits: 1.1 s vs 7.1 s at N = 1024, 0.28 s vs 8.1 s at 512, 0.17 s
#:   vs 1.1 s at 384, next to a busy process 2.4 s vs 23.8 s at 1024; with ``OMP_WAIT_POLICY=PASSIVE`` set
#:   before torch is imported the collapse goes but two threads still lose (×0.73 at N = 128, ×0.92 at 512,
#:   ×0.82 at 1024);
#: - a batch of ``eigvalsh`` (split over Python threads, no OpenMP spinning): two threads 1.0–1.6× faster from
#:   N = 64 (×1.5 at N = 1024).
#:
#: No size up to 1024 gains overall, so auto keeps one thread up to there; the bound sits beyond the measured
#: range, where a retrieval step's (B, N)·(N, N) products are large enough to share. Re-measure on the machine
#: that runs the jobs (``python bench/run.py --only threads``).
SMALL_PROBLEM = 2048


@cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def choose(setting: int | str, n_neurons: int) -> int:
    """The number of threads for ``setting`` (a positive int, or ``auto``) and a problem of ``n_neurons``."""
    if setting == "auto":
        return 1 if n_neurons < SMALL_PROBLEM else available_cores()
    return int(setting)


def budget() -> int:
    """The calling thread's current budget (torch's intra-op thread count follows OpenMP's)."""
    return torch.get_num_threads()


@contextmanager
def job_budget(threads: int) -> Iterator[int]:
    """Run the block with ``threads`` OpenMP (torch, MKL) and BLAS threads; restored afterwards."""
    with _controller().limit(limits=threads):
        yield threads


def map_chunks(fn: Callable[[Tensor], Tensor], x: Tensor, *, min_chunk: int = 2) -> Tensor:
    """``torch.cat([fn(c) for c in chunks of x])`` with the chunks spread over the budget's threads.

    Each worker runs single-threaded (torch releases the GIL in LAPACK), which beats LAPACK's own threading
    inside each matrix for the batched N ≤ 1000 eigenproblems of the stability analysis. With a budget of one
    thread, a GPU tensor, or fewer than ``min_chunk`` rows per worker, it is one plain call.
    """
    workers = budget()
    if x.device.type != "cpu" or workers < 2 or x.shape[0] < min_chunk * workers:
        return fn(x)

    def single(chunk: Tensor) -> Tensor:
        with _controller().limit(limits=1, user_api="openmp"):
            return fn(chunk)

    with ThreadPoolExecutor(workers) as pool:
        return torch.cat(list(pool.map(single, x.chunk(workers))))
