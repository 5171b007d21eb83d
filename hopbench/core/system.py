"""Compose a network from plain arguments (no Hydra): the API that the CLI and notebooks share.

>>> from hopbench import compose
>>> system = compose(model="modified", strategy="i_minus_wt_lambda", activation="tanh",
...                  activation_params={"beta": 4.0}, n_neurons=100, load=0.05, dtype="float64")
>>> system.model.vector_field(system.model.initial_state(system.data.patterns.to(system.dtype)))
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from hopbench.core.activations import build_activation
from hopbench.core.data import PatternSet, build_dataset
from hopbench.core.models import Model, build_model
from hopbench.core.network import Network
from hopbench.core.weights import build_network
from hopbench.errors import ConfigError

__all__ = ["DTYPES", "System", "compose", "generator", "resolve_device", "resolve_n_patterns"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if device not in DEVICES and not str(device).startswith("cuda:"):
        raise ConfigError("device", device, "unknown device", allowed=DEVICES)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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
    if not isinstance(n_neurons, int) or n_neurons <= 0:
        raise ConfigError("n_neurons", n_neurons, "must be a positive integer")
    if n_patterns is not None and load is not None:
        raise ConfigError("n_patterns", n_patterns, f"give n_patterns or load, not both (load={load})")
    if n_patterns is not None:
        if not isinstance(n_patterns, int) or n_patterns <= 0:
            raise ConfigError("n_patterns", n_patterns, "must be a positive integer")
        return n_patterns
    if load is None:
        raise ConfigError("load", load, "give n_patterns or load")
    if not load > 0:
        raise ConfigError("load", load, "must be > 0")
    return max(1, round(load * n_neurons))


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

    def with_model(self, name: str, **kwargs: object) -> System:
        """The same patterns and weights under another model (for original vs modified comparisons)."""
        return System(self.data, self.net, build_model(name, self.net, **kwargs), self.seed)


def compose(*, model: str = "original", activation: str = "tanh", activation_params: dict | None = None,
            strategy: str = "identity", strategy_params: dict | None = None, energy: str = "auto",
            energy_params: dict | None = None, weights: str = "hebbian", weights_params: dict | None = None,
            dataset: str = "random_binary", dataset_params: dict | None = None, bias: dict | None = None,
            n_neurons: int = 100, n_patterns: int | None = None, load: float | None = None, seed: int = 0,
            device: str = "auto", dtype: str = "float32", cue_map: str = "affine") -> System:
    """Build patterns, weights and a model from names and parameters (see the conf/ groups)."""
    P = resolve_n_patterns(n_neurons, n_patterns, load)
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    main = build_activation(activation, activation_params)
    data = build_dataset(dataset, dataset_params, n_patterns=P, n_neurons=n_neurons,
                         generator=generator(seed, "patterns"))
    net = build_network(weights, weights_params, data, main, generator=generator(seed, "weights"), bias=bias,
                        device=dev, dtype=dt)
    m = build_model(model, net, strategy=strategy, strategy_params=strategy_params, energy=energy,
                    energy_params=energy_params, cue_map=cue_map)
    return System(data, net, m, seed)
