"""One job: every option of a run as an object, checked together before any compute.

A :class:`Job` is what the ``hopbench`` command and the Python API build from a composed config
(:func:`hopbench.app.compose.job_from_config`). Each part checked its own parameters when it was built;
the job checks how they fit together (the cue against the data, the task against the system, the memory the
run needs against the memory there is), so a bad value is reported in one line before anything runs.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import torch

from hopbench import threads
from hopbench.analysis.end_states import EndStateConfig
from hopbench.analysis.settings import LyapunovSettings, RetrievalSettings, SpuriousSettings
from hopbench.analysis.stability import StabilityConfig
from hopbench.app.tracking import Logger
from hopbench.core.data import Corruption
from hopbench.core.models import MODELS, ModelKind
from hopbench.core.system import System, SystemSpec, build_system
from hopbench.errors import ConfigError, flag
from hopbench.solve import SolverConfig

__all__ = ["Job", "Task", "memory_estimate"]


class Task:
    """A config-group option of ``task``: what a job does with its system (see hopbench.app.tasks)."""

    name: str = ""

    def check(self, job: Job) -> None:
        """A ConfigError when the task cannot run on ``job``'s composition (before any compute)."""

    def run(self, job: Job, recorder: object) -> dict:
        """Measure, record tables and figures through ``recorder``, and return the results' content."""
        raise NotImplementedError

    def largest_system(self, job: Job) -> tuple[int, int]:
        """(patterns, batch) of the largest system the task builds (for the memory estimate)."""
        return job.system.n_patterns, job.system.n_patterns * job.retrieval.n_cues


@dataclass(frozen=True, kw_only=True)
class Job:
    """A composed, checked run: the system, the task and the settings of the measurements."""

    system: SystemSpec
    task: Task
    compare: bool
    cue: Corruption
    solver: SolverConfig
    stability: StabilityConfig
    retrieval: RetrievalSettings
    spurious: SpuriousSettings
    lyapunov: LyapunovSettings
    end_states: EndStateConfig
    logger: Logger
    threads: int
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        flag("compare", self.compare)
        self.cue.check_kind(self.system.dataset.kind)
        self.task.check(self)
        needed, available = memory_estimate(self), _available_memory(self.system.torch_device)
        if available is not None and needed > available:
            raise ConfigError("n_neurons", self.system.n_neurons, f"this run needs about {needed / 2**30:.1f} GiB "
                              f"(weights, trajectories and analysis buffers), more than the {available / 2**30:.1f} "
                              "GiB available", allowed="a smaller n_neurons, n_patterns or batch")

    @property
    def model(self) -> ModelKind:
        return self.system.model

    def models(self) -> list[ModelKind]:
        """The models this job measures: its own, and with ``compare`` original and modified side by side."""
        if not self.compare:
            return [self.system.model]
        partner = self.system.model if self.system.model.name != "original" else MODELS.build("modified")
        return [MODELS.build("original"), partner]

    def build(self, **changes: object) -> dict[str, System]:
        """One system per model of the job on the same patterns and weights (``changes``: e.g. n_patterns)."""
        return self.partners(build_system(self.system.replace(**changes) if changes else self.system))

    def partners(self, system: System) -> dict[str, System]:
        """``system``'s weights and patterns under every model of the job: the job's own model as it is, a
        comparison partner with its natural strategy and energy."""
        return {kind.name: system if kind.name == self.model.name else system.with_model(kind)
                for kind in self.models()}

    def thread_budget(self) -> AbstractContextManager[int]:
        """The job's CPU thread budget (hopbench.threads), set once around everything the job computes."""
        return threads.job_budget(self.threads)


#: bytes per entry and live copies of the largest arrays (W in float64 and the run's dtype; RK stages)
_STAGES = 10


def memory_estimate(job: Job) -> int:
    """Bytes a job needs at its largest: W (float64 and the run's dtype), the trajectories of the largest batch
    (about ten (B, N) buffers for the Runge–Kutta stages) and the bounded analysis buffers."""
    from hopbench.chunks import MATRIX_CHUNK_ENTRIES

    patterns, batch = job.task.largest_system(job)
    n = job.system.weights.n_total(patterns, job.system.n_neurons)
    itemsize = 8 if job.system.dtype == "float64" else 4
    weights = n * n * (8 + itemsize)
    states = batch * n * itemsize * _STAGES
    analysis = min(MATRIX_CHUNK_ENTRIES, max(1, job.stability.max_points) * n * n) * 8 * 3
    return weights + states + analysis


def _available_memory(device: torch.device) -> int | None:
    """Free memory on ``device`` in bytes (None when unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():  # MemAvailable counts reclaimable caches, as the kernel would hand them out
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None
