"""Typed configs: one structured config (a dataclass naming its implementation with ``_target_``) per option
of every config group, generated from the option's constructor, and the typed top-level keys.

The options themselves live in the registries of the layers that implement them (activations, weights,
data sets and cues, models, strategies and energies, tasks, loggers); hydra-zen's ``builds`` turns each
constructor's signature into a config class, so every default lives once, in the Python signature, and both
the ``hopbench`` command and :func:`hopbench.compose` instantiate the same classes. OmegaConf checks types
(``load=abc`` is not a number) and unknown keys when a config is composed; each constructor checks ranges
when it is built. ``conf/config.yaml`` holds only the defaults list and Hydra's own settings;
``conf/experiment`` and friends hold presets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra_zen import builds

from hopbench.analysis.end_states import EndStateConfig
from hopbench.analysis.settings import LyapunovSettings, RetrievalSettings, SpuriousSettings
from hopbench.analysis.stability import StabilityConfig
from hopbench.app.tasks import TASKS
from hopbench.app.tracking import LOGGERS
from hopbench.core.activations import ACTIVATIONS
from hopbench.core.data import CUES, DATASETS
from hopbench.core.models import ENERGIES, MODELS, STRATEGIES
from hopbench.core.weights import WEIGHTS, Bias
from hopbench.registry import Registry
from hopbench.solve import SolverConfig

__all__ = ["GROUPS", "SOLVER_PRESETS", "HopbenchConfig", "auto", "option_names", "register"]

#: config groups whose options come from a registry
GROUPS: dict[str, Registry] = {"model": MODELS, "activation": ACTIVATIONS, "strategy": STRATEGIES,
                               "energy": ENERGIES, "weights": WEIGHTS, "dataset": DATASETS, "cue": CUES,
                               "task": TASKS, "logger": LOGGERS}
#: groups with an ``auto`` option: the model's natural strategy and the strategy's intended energy
AUTO_GROUPS = ("strategy", "energy")
#: the ``solver`` group: SolverConfig with the method (and, for fixed steps, the step size) set
SOLVER_PRESETS: dict[str, dict[str, Any]] = {"dopri5": {"method": "dopri5"}, "bosh3": {"method": "bosh3"},
                                             "rk4": {"method": "rk4", "step_size": 0.05},
                                             "euler": {"method": "euler", "step_size": 0.05},
                                             "ros34pw2": {"method": "ros34pw2"}}


def auto() -> None:
    """The ``auto`` option of ``strategy`` and ``energy``: None, i.e. the model's natural choice."""
    return None


def _config(target: Any, **preset: Any) -> Any:
    return builds(target, populate_full_signature=True, **preset)


BiasConfig = _config(Bias)
RetrievalConfig = _config(RetrievalSettings)
SpuriousConfig = _config(SpuriousSettings)
StabilitySettingsConfig = _config(StabilityConfig)
LyapunovConfig = _config(LyapunovSettings)
EndStatesConfig = _config(EndStateConfig)


@dataclass
class HopbenchConfig:
    """The top-level keys; the config groups' options are chosen in ``conf/config.yaml``'s defaults list."""

    model: Any = None
    activation: Any = None
    strategy: Any = None
    energy: Any = None
    weights: Any = None
    dataset: Any = None
    cue: Any = None
    solver: Any = None
    task: Any = None
    logger: Any = None
    n_neurons: int = 100
    #: give n_patterns or load (α = P/N); giving both on the command line is an error
    n_patterns: Optional[int] = None  # noqa: UP045 — OmegaConf reads typing.Optional, not X | None
    load: Optional[float] = 0.05  # noqa: UP045
    seed: int = 0
    #: auto (CUDA when available) | cpu | cuda | cuda:<index>
    device: str = "auto"
    #: integration dtype; eigen-analysis always runs in float64
    dtype: str = "float32"
    #: run original and modified on the same weights, patterns and cues
    compare: bool = False
    #: y₀ = W a₀ + b (affine) or y₀ = a₀ (identity) for y-state models
    cue_map: str = "affine"
    #: CPU threads of the job: auto (one for small problems, else every core of the job) or a number
    threads: Any = "auto"
    experiment_name: str = "default"
    #: reproductions: paper-scale sizes (task.full_params) instead of task.params
    full: bool = False
    #: the metric a sweeper optimises (a path into results.json, e.g. metrics.retrieval_accuracy)
    objective: Optional[str] = None  # noqa: UP045
    #: skip a job whose folder holds results.json with status ok and the same config_hash; null: on in a multirun
    resume: Optional[bool] = None  # noqa: UP045
    bias: Any = field(default_factory=BiasConfig)
    retrieval: Any = field(default_factory=RetrievalConfig)
    spurious: Any = field(default_factory=SpuriousConfig)
    stability: Any = field(default_factory=StabilitySettingsConfig)
    lyapunov: Any = field(default_factory=LyapunovConfig)
    end_states: Any = field(default_factory=EndStatesConfig)


def option_names(group: str) -> list[str]:
    """The options of a registry-backed group (``auto`` included where it exists)."""
    if group == "solver":
        return sorted(SOLVER_PRESETS)
    return sorted([*GROUPS[group].names(), *(["auto"] if group in AUTO_GROUPS else [])])


_registered = False


def register() -> None:
    """Put every typed config into Hydra's ConfigStore (idempotent)."""
    global _registered
    if _registered:
        return
    store = ConfigStore.instance()
    store.store(name="hopbench_schema", node=HopbenchConfig)
    for group, registry in GROUPS.items():
        for name in registry:
            store.store(group=group, name=name, node=_config(registry.get(name)))
    for group in AUTO_GROUPS:
        store.store(group=group, name="auto", node=builds(auto))
    for name, preset in SOLVER_PRESETS.items():
        store.store(group="solver", name=name, node=_config(SolverConfig, **preset))
    _registered = True
