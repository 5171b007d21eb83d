"""The thread budget: how many CPU threads torch, LAPACK and BLAS may use, set in one place.

torch on CPU runs its intra-op work and MKL's LAPACK on OpenMP threads. Three facts decide how hopbench sets
them (measured on torch 2.13's CPU build, see ``tests/test_threads.py`` and ``make bench``):

- ``torch.set_num_threads(n)`` with n ≥ 2 leaves MKL in a state where a later batched LU factorisation
  (``torch.linalg.lu_factor``, ``solve``, ``inv``; matrices of ~150 rows and more) returns garbage pivots, fails
  with "Pivots given to lu_solve …" or hangs (a torch bug, pytorch/pytorch#142815; a later
  ``omp_set_num_threads(1)`` does not undo it). hopbench never calls it: the budget is set through threadpoolctl
  instead (``omp_set_num_threads`` for torch and MKL, the BLAS library's own call for numpy/scipy), which does
  not touch MKL's state. Since a user's script may call it, hopbench's batched LU goes through
  :func:`lu_factor`, which factorises large CPU matrices one at a time (unaffected).
- On tiny problems a second thread only waits: below :data:`SMALL_PROBLEM` neurons the solver always runs on
  one thread (:func:`solver_budget`).
- Whether more threads pay above that depends on what else runs on the cores. A retrieval batch (``integrate``,
  256 cues, α = 0.05, medians of 5, ``OMP_WAIT_POLICY=PASSIVE``) on the 2-core development machine, one thread
  against two:

  ========  =====  =====  =====  =====  =====
  N         128    256    384    512    768
  idle      1.33×  1.54×  1.79×  1.76×  1.93×   (two threads faster)
  busy      0.67×  0.83×  0.86×  0.52×  0.64×   (next to ``while True: pass``: two threads slower)
  ========  =====  =====  =====  =====  =====

  A whole job is another matter: besides its large batches it runs many small operations (stability at a few
  points, Newton on a few rows, short Lyapunov batches), and there two threads lose even on an idle machine:
  ``hopbench -m seed=0,...,5 n_neurons=300 load=0.1`` took 51 s with two threads against 28 s with one
  (system time 24 s against 7 s). So ``threads=auto`` (:func:`choose`) gives a job one thread below
  :data:`JOB_THREADS_FROM` neurons, and above it the cores that other processes leave idle, measured from
  ``/proc/stat`` (:func:`idle_cores`). Outside a job (the Python API, ``make bench``) the solver uses the
  caller's budget above :data:`SMALL_PROBLEM`.

A job sets its budget once (:func:`job_budget`); a launcher running several jobs on one machine passes its
share so that jobs × threads ≤ cores. :func:`map_chunks` is the one place that runs work on several Python
threads (a batch of LAPACK calls split over the budget, each worker single-threaded).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cache

import torch
from threadpoolctl import ThreadpoolController
from torch import Tensor

__all__ = ["JOB_THREADS_FROM", "LU_ONE_AT_A_TIME_FROM", "SMALL_PROBLEM", "available_cores", "budget", "choose",
           "idle_cores", "job_budget", "lu_factor", "map_chunks", "solver_budget"]

#: the solver runs problems with fewer neurons than this on one thread, whatever the budget
SMALL_PROBLEM = 128
#: ``threads=auto`` gives a job with fewer neurons than this one thread (a whole job, measured above: two threads
#: lose at N = 300; the bound sits beyond the measured range, re-measure on the machine that runs the jobs)
JOB_THREADS_FROM = 2048
#: CPU matrices of this many rows and more are LU-factorised one at a time (a batched call breaks from ~150 rows
#: after ``torch.set_num_threads``; below, a loop would only add per-call overhead)
LU_ONE_AT_A_TIME_FROM = 96
IDLE_SAMPLE_S = 0.1  # how long idle_cores samples /proc/stat
IDLE_REUSE_S = 30.0  # ... and for how long a measurement is reused
_idle_seen: tuple[float, float] | None = None  # (monotonic time, idle cores)


@cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _busy_seconds() -> float | None:
    """CPU seconds all cores have been busy since boot (/proc/stat), None where it cannot be read."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def idle_cores() -> float:
    """Cores of this process's share that other processes leave idle: the machine's busy time over
    ``IDLE_SAMPLE_S`` minus this process's own, reused for ``IDLE_REUSE_S``; every core where /proc/stat is
    absent."""
    global _idle_seen
    now = time.monotonic()
    if _idle_seen is not None and now - _idle_seen[0] < IDLE_REUSE_S:
        return _idle_seen[1]
    before, own_before, start = _busy_seconds(), sum(os.times()[:2]), time.monotonic()
    if before is None:
        return float(available_cores())
    time.sleep(IDLE_SAMPLE_S)
    after, own_after, elapsed = _busy_seconds(), sum(os.times()[:2]), time.monotonic() - start
    others = max(0.0, ((after or before) - before) - (own_after - own_before)) / elapsed
    _idle_seen = (time.monotonic(), max(0.0, available_cores() - others))
    return _idle_seen[1]


def choose(setting: int | str, n_neurons: int) -> int:
    """The number of threads for ``setting`` (a positive int, or ``auto``) and a job of ``n_neurons``: auto gives
    one thread below :data:`JOB_THREADS_FROM`, else the idle cores (at least one, rounded from 0.75 up)."""
    if setting == "auto":
        if n_neurons < JOB_THREADS_FROM:
            return 1
        return max(1, min(available_cores(), int(idle_cores() + 0.25)))
    return int(setting)


def solver_budget(n_neurons: int) -> AbstractContextManager:
    """One thread for the solver's many tiny operations below :data:`SMALL_PROBLEM`, else the job's budget."""
    return job_budget(1) if n_neurons < SMALL_PROBLEM else nullcontext(budget())


def budget() -> int:
    """The calling thread's current budget (torch's intra-op thread count follows OpenMP's)."""
    return torch.get_num_threads()


@contextmanager
def job_budget(threads: int) -> Iterator[int]:
    """Run the block with ``threads`` OpenMP (torch, MKL) and BLAS threads; restored afterwards."""
    with _controller().limit(limits=threads):
        yield threads


def lu_factor(A: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``torch.linalg.lu_factor_ex(A)`` for a batch A (..., n, n): (LU, pivots, info), correct whatever the caller
    did to torch's threads. On the CPU, matrices with n ≥ :data:`LU_ONE_AT_A_TIME_FROM` are factorised one per
    call (each may still use LAPACK's own threads), which the batched LU bug of the module notes does not reach."""
    if A.device.type != "cpu" or A.dim() < 3 or A.shape[-1] < LU_ONE_AT_A_TIME_FROM or A.shape[:-2].numel() < 2:
        return torch.linalg.lu_factor_ex(A)
    flat = A.reshape(-1, *A.shape[-2:])
    b, n = flat.shape[0], flat.shape[-1]
    # LAPACK's column-major layout, as the batched call returns it: lu_solve takes it without a copy
    LU = torch.empty(b, n, n, dtype=A.dtype).mT
    pivots = torch.empty(b, n, dtype=torch.int32)
    info = torch.empty(b, dtype=torch.int32)
    for i in range(b):
        torch.linalg.lu_factor_ex(flat[i], out=(LU[i], pivots[i], info[i]))
    return LU.reshape(A.shape), pivots.reshape(A.shape[:-1]), info.reshape(A.shape[:-2])


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
