"""A composition of options (:class:`SystemSpec`) and the system built from it (:class:`System`).

A :class:`SystemSpec` holds one object per config group — model kind, activation, storage rule, data set,
strategy and energy (None: ``auto``), bias — with the sizes, seed, device and dtype. It checks that the parts
fit together when it is built (before any compute); :func:`build_system` then draws the patterns, stores
them and binds the model. Names and defaults come from the configuration layer (``hopbench.compose`` and
the ``hopbench`` command build a SystemSpec from the same typed configs).

>>> from hopbench import compose
>>> system = compose(model="modified", activation="tanh", n_neurons=100, load=0.05, dtype="float64")
>>> system.model.vector_field(system.model.initial_state(system.patterns))
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import torch
from torch import Tensor

from hopbench.core.activations import Lagrangian
from hopbench.core.data import PatternSet, PatternSource
from hopbench.core.models import Energy, Model, ModelKind, ModelSpec, Strategy, build_model
from hopbench.core.network import Network
from hopbench.core.weights import Bias, StorageRule, build_network
from hopbench.errors import ConfigError, number

__all__ = ["DTYPES", "System", "SystemSpec", "build_system", "generator", "resolve_device", "resolve_dtype",
           "resolve_n_patterns"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: Gardner (1988): no coupling matrix makes more than 2N unbiased ±1 patterns fixed points (α ≤ 2)
GARDNER_BOUND = 2.0
DEVICES = ("auto", "cpu", "cuda")
#: ``device=auto`` puts a system of fewer neurons on the CPU even where CUDA is available: a GPU integration step
#: costs milliseconds of kernel launches and host synchronisation whatever its size, so small systems run faster
#: on the CPU (measured, bench/RESULTS.md and bench/RESULTS_cuda.md, scaling: N = 128 with 64 cues 6 ms on a
#: 2-core CPU against 33 ms on an H200, N = 512 with 64 cues 21 ms against 30 ms, N = B = 512 0.12 s against
#: 0.03 s; a tiny-size reproduction 2.6 s on the CPU, over 60 s on the GPU)
AUTO_CUDA_NEURONS = 512


def resolve_device(device: str, n_neurons: int | None = None) -> torch.device:
    """``auto`` → CUDA when available (for a system of ``n_neurons`` only from :data:`AUTO_CUDA_NEURONS` on),
    else CPU."""
    if device not in DEVICES and not str(device).startswith("cuda:"):
        raise ConfigError("device", device, "unknown device", allowed=DEVICES)
    if device == "auto":
        large = n_neurons is None or n_neurons >= AUTO_CUDA_NEURONS
        return torch.device("cuda" if large and torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", device, "CUDA is not available on this machine", allowed=["auto", "cpu"])
    return torch.device(device)


def resolve_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ConfigError("dtype", dtype, "unknown dtype", allowed=list(DTYPES))
    return DTYPES[dtype]


def generator(seed: int, stream: str) -> torch.Generator:
    """An independent, reproducible CPU random stream per (seed, purpose)."""
    digest = hashlib.sha256(f"{seed}:{stream}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def resolve_n_patterns(n_neurons: int, n_patterns: int | None, load: float | None) -> int:
    """P from ``n_patterns`` or from the load α = P/N (exactly one of them)."""
    number("n_neurons", n_neurons, at_least=1, integer=True)
    if n_patterns is not None and load is not None:
        raise ConfigError("n_patterns", n_patterns, f"give n_patterns or load, not both (load={load})")
    if n_patterns is not None:
        return int(number("n_patterns", n_patterns, at_least=1, integer=True))
    if load is None:
        raise ConfigError("load", load, "give n_patterns or load")
    return max(1, round(number("load", load, above=0) * n_neurons))


@dataclass(frozen=True, kw_only=True)
class SystemSpec:
    """Every part of a system as an option object, checked together when built (before any compute).

    ``strategy`` and ``energy`` None mean ``auto``: the model's natural strategy and its intended energy.
    """

    model: ModelKind
    activation: Lagrangian
    weights: StorageRule
    dataset: PatternSource
    strategy: Strategy | None
    energy: Energy | None
    bias: Bias
    n_neurons: int
    n_patterns: int
    seed: int
    device: str
    dtype: str
    cue_map: str

    def __post_init__(self) -> None:
        number("n_neurons", self.n_neurons, at_least=1, integer=True)
        number("n_patterns", self.n_patterns, at_least=1, integer=True)
        number("seed", self.seed, integer=True)
        resolve_device(self.device)
        resolve_dtype(self.dtype)
        if self.dataset.kind == "bipolar" and self.n_patterns > GARDNER_BOUND * self.n_neurons:
            raise ConfigError("load", round(self.n_patterns / self.n_neurons, 6), "no storage rule holds more "
                              f"than {GARDNER_BOUND:g}N unbiased ±1 patterns (Gardner's bound)",
                              allowed=f"≤ {GARDNER_BOUND:g}")
        self.dataset.check(self.n_patterns, self.n_neurons)
        self.weights.check(self.n_patterns, self.n_neurons, self.activation)
        self.model_spec  # noqa: B018 — strategy, energy and cue map checked against the model's state

    @property
    def torch_device(self) -> torch.device:
        """The device the system runs on (``auto`` resolved by its size, :func:`resolve_device`)."""
        return resolve_device(self.device, self.n_neurons)

    @property
    def model_spec(self) -> ModelSpec:
        return self.model.resolve(self.strategy, self.energy, self.cue_map)

    @property
    def n_total(self) -> int:
        """Neurons of the network, hidden ones included."""
        return self.weights.n_total(self.n_patterns, self.n_neurons)

    def replace(self, **changes: object) -> SystemSpec:
        """A copy with some parts or sizes changed (checked again)."""
        return dataclasses.replace(self, **changes)


@dataclass
class System:
    """Stored patterns, the network that holds them and the model that runs on it."""

    data: PatternSet
    net: Network
    model: Model
    seed: int

    @property
    def device(self) -> torch.device:
        return self.net.device

    @property
    def dtype(self) -> torch.dtype:
        return self.net.dtype

    @property
    def load(self) -> float:
        return self.data.n_patterns / self.data.n_neurons

    @property
    def patterns(self) -> Tensor:
        """The stored patterns (P, N_visible) on the network's device, in its dtype (``data.patterns`` is the
        float64 CPU reference copy)."""
        return self.data.patterns.to(self.device, self.dtype)

    def with_model(self, kind: ModelKind | str, strategy: Strategy | str | None = None,
                   energy: Energy | str | None = None, cue_map: str | None = None, **params: dict) -> System:
        """The same patterns and weights under another model (for original vs modified comparisons); strategy
        and energy as options or names (``strategy_params=``, ``energy_params=``), None: ``auto``."""
        model = build_model(kind, self.net, strategy=strategy, energy=energy,
                            cue_map=self.model.spec.cue_map if cue_map is None else cue_map, **params)
        return System(self.data, self.net, model, self.seed)


def build_system(spec: SystemSpec) -> System:
    """Draw the patterns, store them and bind the model: the compute a :class:`SystemSpec` describes."""
    data = spec.dataset.draw(spec.n_patterns, spec.n_neurons, generator(spec.seed, "patterns"))
    net = build_network(spec.weights, data, spec.activation, generator=generator(spec.seed, "weights"),
                        bias=spec.bias, device=spec.torch_device, dtype=resolve_dtype(spec.dtype))
    return System(data, net, Model(spec.model_spec, net), spec.seed)
