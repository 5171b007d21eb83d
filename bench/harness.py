"""Timing, peak memory and machine description for the benchmark (no hopbench imports here).

Wall times are medians over repeats after a warm-up run; on CUDA every timed region is bracketed by
``torch.cuda.synchronize``. Peak memory is taken during the warm-up run: on CUDA from
``torch.cuda.max_memory_allocated``; on CPU as the peak resident set size above the resident size at the start
of the run (Linux ``VmHWM`` reset through ``/proc/self/clear_refs`` after ``malloc_trim``), because
tracemalloc does not see torch's allocations.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

__all__ = ["Contention", "Measurement", "machine_info", "measure", "memory_method", "synchronize", "timed"]

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


@dataclass
class Measurement:
    """Wall times of the timed repeats, the warm-up's peak memory and the last result."""

    times: list[float]
    peak_bytes: int | None
    result: Any = None
    other_cpu: float = float("nan")  # share of the machine's CPU time used by other processes while timing
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.times), max(self.times)

    @property
    def peak_mib(self) -> float:
        return float("nan") if self.peak_bytes is None else self.peak_bytes / 2**20


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """(seconds, result) of one call, synchronised on CUDA."""
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - start, out


# contention ----------------------------------------------------------------------------------------------
def _machine_ticks() -> tuple[int, int] | None:
    """(busy, total) CPU ticks of the whole machine since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    total = sum(fields)
    return total - fields[3] - fields[4], total


def _own_ticks() -> int | None:
    """CPU ticks (user + system, all threads) of this process."""
    try:
        with open("/proc/self/stat") as fh:
            after = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(after[11]) + int(after[12])


class Contention:
    """Share of the machine's CPU time taken by other processes (and the hypervisor) between start and stop.

    On a small machine another job can slow a run several-fold (OpenMP threads spin against each other), so
    every timing carries this number and the report flags disturbed ones.
    """

    def __init__(self) -> None:
        self.machine, self.own = _machine_ticks(), _own_ticks()

    def share(self) -> float:
        machine, own = _machine_ticks(), _own_ticks()
        if None in (machine, own, self.machine, self.own):
            return float("nan")
        busy, total = machine[0] - self.machine[0], machine[1] - self.machine[1]  # type: ignore[index]
        if total <= 0:
            return 0.0
        return max(0.0, busy - (own - self.own)) / total  # type: ignore[operator]


# peak memory --------------------------------------------------------------------------------------------
def _status_kib(key: str) -> int | None:
    try:
        with open(_STATUS) as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS counter (Linux ≥ 4.0); False where not allowed."""
    try:
        with open(_CLEAR_REFS, "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def _malloc_trim() -> None:
    """Give freed heap pages back to the OS so that the next run's peak is not hidden by reused pages."""
    name = ctypes.util.find_library("c")
    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(name).malloc_trim(0)


def memory_method(device: torch.device) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated above the allocation at the start of the run"
    if _reset_hwm():
        return "peak RSS (VmHWM, reset via /proc/self/clear_refs after malloc_trim) above the RSS at the start"
    return "ru_maxrss increase (a lower bound: it only grows when a run beats the process's previous peak)"


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, int | None]]:
    """Yields a dict whose ``peak`` is set to the peak extra bytes used inside the block."""
    box: dict[str, int | None] = {"peak": None}
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield box
        torch.cuda.synchronize(device)
        box["peak"] = torch.cuda.max_memory_allocated(device) - start
        return
    _malloc_trim()
    if _reset_hwm():
        start = _status_kib("VmRSS") or 0
        yield box
        box["peak"] = max(0, (_status_kib("VmHWM") or 0) - start) * 1024
        return
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield box
    box["peak"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) * 1024


def measure(fn: Callable[[], Any], device: torch.device, *, repeats: int,
            warmup: Callable[[], Any] | None = None) -> Measurement:
    """Warm up once (``warmup`` or ``fn``, measuring peak memory), then time ``repeats`` calls of ``fn``."""
    with peak_memory(device) as box:
        (warmup or fn)()
        synchronize(device)
    times, out = [], None
    contention = Contention()
    for _ in range(max(1, repeats)):
        seconds, out = timed(fn, device)
        times.append(seconds)
    return Measurement(times, box["peak"], out, contention.share())


# machine -------------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _git_revision() -> str:
    """Commit of the working tree, with ``+dirty`` when it has uncommitted changes."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def machine_info(device: torch.device) -> dict[str, str]:
    """What the numbers were measured on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {
        "cpu": _cpu_model(),
        "cpu_cores_usable": str(cores),
        "cpu_count": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS", "unset"),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "none",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchdiffeq": _version("torchdiffeq"),
        "scipy": _version("scipy"),
        "numpy": _version("numpy"),
        "hopbench": _version("hopbench"),
        "git": _git_revision(),
        "memory_method": memory_method(device),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    return info
