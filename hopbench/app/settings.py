"""From a composed Hydra config to validated, typed settings, before any compute.

Every check raises :class:`~hopbench.errors.ConfigError` with the config key and what is allowed. Checks
that need the data (e.g. P ≤ N for the projection rule) are done here from the config alone, so a sweep
can be validated job by job without building any network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hopbench.analysis.stability import StabilityConfig
from hopbench.core.activations import ACTIVATIONS
from hopbench.core.data import CUES, DATASETS
from hopbench.core.models import ENERGIES, MODELS, STRATEGIES
from hopbench.core.models.energies import STATE_OF_ENERGY
from hopbench.core.system import resolve_device, resolve_dtype, resolve_n_patterns
from hopbench.core.weights import WEIGHTS
from hopbench.errors import ConfigError
from hopbench.solve import SolverConfig

__all__ = ["TASK_NAMES", "Settings", "settings_from_config"]

TASK_NAMES = ("evaluate", "train", "capacity", "critical_load", "lyapunov", "reproduce")
MODEL_STATE = {"original": "y", "modified": "u", "modified_y": "y"}
#: data kinds each storage rule can hold meaningfully is not restricted; these rules need P ≤ N
P_LIMITED = {"pseudoinverse": lambda params: not params.get("ridge")}


def _params(node: Any) -> dict:
    """A group node without its ``name`` as a plain dict."""
    data = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    return {k: v for k, v in data.items() if k != "name"}


def _positive(key: str, value: Any, kind: type = float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        raise ConfigError(key, value, f"must be a positive {'integer' if kind is int else 'number'}")
    if value <= 0:
        raise ConfigError(key, value, f"must be a positive {'integer' if kind is int else 'number'}")


def _fraction(key: str, value: Any, *, closed: bool = True) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and (
        0 <= value <= 1 if closed else 0 < value < 1)
    if not ok:
        raise ConfigError(key, value, "must lie in [0, 1]" if closed else "must lie in (0, 1)")


@dataclass
class Settings:
    """Everything a run needs, validated."""

    system: dict  # keyword arguments of hopbench.compose, without the model choice
    choice: dict  # model, strategy (+params), energy (+params), cue_map as configured
    compare: bool
    cue: tuple[str, dict]
    solver: SolverConfig
    stability: StabilityConfig
    task: str
    task_params: dict
    retrieval: dict
    spurious: dict
    lyapunov: dict
    max_points: int
    logger: dict = field(default_factory=dict)
    seed: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def n_neurons(self) -> int:
        return self.system["n_neurons"]

    @property
    def model(self) -> str:
        return self.choice["model"]

    def models(self) -> list[str]:
        """The models this run measures (both of original and modified with ``compare``)."""
        if not self.compare:
            return [self.model]
        return ["original", self.model if self.model != "original" else "modified"]

    def model_kwargs(self, name: str) -> dict:
        """build_model keywords for ``name``: the configured choice, or ``auto`` for a comparison partner."""
        if name == self.model:
            return {k: v for k, v in self.choice.items() if k != "model"}
        return dict(strategy="auto", energy="auto", cue_map=self.choice["cue_map"])


def _check_group(key: str, node: Any, registry: Any) -> tuple[str, dict]:
    if not isinstance(node, DictConfig | dict) or "name" not in node:
        raise ConfigError(key, node, "must be a config group with a name", allowed=registry.names())
    name = node["name"]
    params = _params(node)
    registry.get(name)  # unknown name → ConfigError listing the options
    allowed = registry.parameters(name)
    for k in params:
        if k not in allowed:
            raise ConfigError(f"{key}.{k}", params[k], f"not a parameter of {key}={name}", allowed=allowed or "none")
    return name, params


def _check_model(cfg: DictConfig, notes: list[str]) -> dict:
    """The configured model, strategy and energy (``auto`` kept: build_model resolves it per model)."""
    model, _ = _check_group("model", cfg.model, MODELS)
    strategy, strategy_params = _check_group("strategy", cfg.strategy, _Auto(STRATEGIES))
    energy, energy_params = _check_group("energy", cfg.energy, _Auto(ENERGIES))
    state = MODEL_STATE[model]
    if energy != "auto" and STATE_OF_ENERGY[energy] != state:
        allowed = [*sorted(n for n, s in STATE_OF_ENERGY.items() if s == state), "auto"]
        raise ConfigError("energy", energy, f"is a function of the {STATE_OF_ENERGY[energy]}-state; "
                          f"model={model} has a {state}-state", allowed=allowed)
    if strategy not in ("auto", "identity") and model == "original":
        notes.append(f"strategy={strategy} does not apply to model=original (R = I): ignored")
        strategy, strategy_params = "identity", {}
    if cfg.cue_map not in ("affine", "identity"):
        raise ConfigError("cue_map", cfg.cue_map, "unknown cue map", allowed=["affine", "identity"])
    return dict(model=model, strategy=strategy, strategy_params=strategy_params, energy=energy,
                energy_params=energy_params, cue_map=cfg.cue_map)


class _Auto:
    """A registry plus the ``auto`` choice (no parameters)."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def names(self) -> list[str]:
        return [*self.registry.names(), "auto"]

    def get(self, name: str) -> Any:
        return None if name == "auto" else self.registry.get(name)

    def parameters(self, name: str) -> list[str]:
        return [] if name == "auto" else self.registry.parameters(name)


def _check_dataset(cfg: DictConfig, n_patterns: int) -> tuple[str, dict]:
    name, params = _check_group("dataset", cfg.dataset, DATASETS)
    n = cfg.n_neurons
    if name == "digits" and n != 64:
        raise ConfigError("n_neurons", n, "dataset=digits has 64 features per pattern", allowed=64)
    if name == "npz":
        path = params.get("path") or ""
        if not path or not Path(path).expanduser().is_file():
            raise ConfigError("dataset.path", path, "no such .npz file")
    if name == "sparse_binary":
        _fraction("dataset.coding_level", params.get("coding_level", 0.1), closed=False)
    if name == "lognormal":
        _positive("dataset.cv", params.get("cv", 1.0))
    return name, params


def _data_kind(name: str, params: dict) -> str:
    if name == "random_binary" or (name == "digits" and params.get("mode", "binarised") == "binarised"):
        return "bipolar"
    if name == "sparse_binary":
        return "binary"
    if name == "npz":
        return params.get("kind", "graded")
    return "graded"


def settings_from_config(cfg: DictConfig, *, explicit: set[str] | None = None) -> Settings:
    """Validate ``cfg`` and return :class:`Settings`. ``explicit`` holds the top-level keys the user gave
    on the command line (so that ``n_patterns=`` alone overrides the default ``load``)."""
    explicit = explicit or set()
    _positive("n_neurons", cfg.n_neurons, int)
    n_patterns, load = cfg.n_patterns, cfg.load
    if n_patterns is not None and load is not None:
        if {"n_patterns", "load"} <= explicit:
            raise ConfigError("n_patterns", n_patterns, f"give n_patterns or load, not both (load={load})")
        if "load" in explicit:
            n_patterns = None
        else:
            load = None
    P = resolve_n_patterns(cfg.n_neurons, n_patterns, load)
    resolve_device(cfg.device)
    resolve_dtype(cfg.dtype)
    if not isinstance(cfg.seed, int):
        raise ConfigError("seed", cfg.seed, "must be an integer")

    notes: list[str] = []
    choice = _check_model(cfg, notes)
    activation, act_params = _check_group("activation", cfg.activation, ACTIVATIONS)
    ACTIVATIONS.build(activation, act_params)  # parameter ranges
    weights, w_params = _check_group("weights", cfg.weights, WEIGHTS)
    dataset, d_params = _check_dataset(cfg, P)
    task, task_params = _check_task(cfg)
    loads = task_params.get("loads", [P / cfg.n_neurons]) if task == "critical_load" else [P / cfg.n_neurons]
    for alpha in loads:
        p = max(1, round(alpha * cfg.n_neurons))
        if weights in P_LIMITED and P_LIMITED[weights](w_params) and p > cfg.n_neurons:
            raise ConfigError("load" if task == "critical_load" else "n_patterns", alpha if task == "critical_load"
                              else p, f"weights={weights} stores at most N = {cfg.n_neurons} patterns without "
                              "ridge (set weights.ridge > 0)", allowed=f"P ≤ {cfg.n_neurons}")
    if weights == "pseudoinverse" and w_params.get("graded") and activation in ("gelu",):
        raise ConfigError("activation", activation, "the graded rule needs an invertible activation",
                          allowed=["power", "sigmoid", "tanh", "relu", "threshold_linear", "smooth_leaky_relu"])
    cue, cue_params = _check_group("cue", cfg.cue, CUES)
    CUES.build(cue, cue_params, kind=_data_kind(dataset, d_params))  # flip needs binary data, level ranges
    solver = SolverConfig.from_params(cfg.solver.name, _params(cfg.solver))
    st = OmegaConf.to_container(cfg.stability, resolve=True)
    max_points = st.pop("max_points", 256)
    _positive("stability.max_points", max_points, int)
    stability = StabilityConfig(**st)
    retrieval = dict(OmegaConf.to_container(cfg.retrieval, resolve=True))
    _positive("retrieval.n_cues", retrieval["n_cues"], int)
    _fraction("retrieval.threshold", retrieval["threshold"])
    spurious = dict(OmegaConf.to_container(cfg.spurious, resolve=True))
    _positive("spurious.n_states", spurious["n_states"], int)
    lyap = dict(OmegaConf.to_container(cfg.lyapunov, resolve=True))
    _positive("lyapunov.n_states", lyap["n_states"], int)
    logger = dict(OmegaConf.to_container(cfg.logger, resolve=True))
    if logger.get("name") not in ("wandb", "none"):
        raise ConfigError("logger", logger.get("name"), "unknown logger", allowed=["none", "wandb"])
    if logger.get("mode") not in (None, "offline", "online", "disabled"):
        raise ConfigError("logger.mode", logger.get("mode"), "unknown wandb mode",
                          allowed=["offline", "online", "disabled"])

    system = dict(
        activation=activation, activation_params=act_params, weights=weights, weights_params=w_params,
        dataset=dataset, dataset_params=d_params, bias=OmegaConf.to_container(cfg.bias, resolve=True),
        n_neurons=cfg.n_neurons, n_patterns=P, seed=cfg.seed, device=cfg.device, dtype=cfg.dtype)
    return Settings(system=system, choice=choice, compare=bool(cfg.compare), cue=(cue, cue_params),
                    solver=solver, stability=stability, task=task, task_params=task_params, retrieval=retrieval,
                    spurious=spurious, lyapunov=lyap, max_points=max_points, logger=logger, seed=cfg.seed,
                    notes=notes)


def _check_task(cfg: DictConfig) -> tuple[str, dict]:
    node = cfg.task
    name = node.get("name")
    if name not in TASK_NAMES:
        raise ConfigError("task", name, "unknown task", allowed=TASK_NAMES)
    params = _params(node)
    if name == "capacity":
        _fraction("task.level", params["level"])
        _positive("task.p_min", params["p_min"], int)
        if params.get("p_max") is not None:
            _positive("task.p_max", params["p_max"], int)
            if params["p_max"] < params["p_min"]:
                raise ConfigError("task.p_max", params["p_max"], f"must be ≥ task.p_min={params['p_min']}")
    if name == "critical_load":
        loads = params["loads"]
        if not loads:
            raise ConfigError("task.loads", loads, "needs at least one load")
        for alpha in loads:
            _positive("task.loads", alpha)
        _fraction("task.level", params["level"])
    if name == "train":
        from hopbench.analysis.training import TrainConfig

        TrainConfig.from_params(params)
        if cfg.weights.get("name") == "bipartite":
            raise ConfigError("weights", "bipartite", "task=train needs every neuron to carry the patterns "
                              "(bipartite has a hidden layer)", allowed=sorted(set(WEIGHTS) - {"bipartite"}))
    if name == "reproduce":
        from hopbench.repro import load

        load(params["which"])
        params["use"] = "full_params" if cfg.get("full") else "params"
    return name, params
