"""Weight structures and storage rules (docs/design.md §4.2), the bias, and the network builder.

A rule (a :class:`StorageRule`, built from its parameters) maps a :class:`Storage` context (stored patterns
(P, N_visible), activation, bias, random stream) to a :class:`Structure`: W (N, N) float64, the visible
neurons, and optionally per-layer activations (``layers``: (size, Lagrangian or None for the main one)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from hopbench.core.activations import ACTIVATIONS, Lagrangian, Layered
from hopbench.core.data import PatternSet
from hopbench.core.network import Network
from hopbench.errors import ConfigError, choice, flag, number
from hopbench.registry import Registry

__all__ = ["WEIGHTS", "Bias", "Storage", "StorageRule", "Structure", "build_network", "goe_matrix"]


@dataclass(frozen=True)
class Storage:
    """What a storage rule may use: the patterns, the main activation, the bias b (N_visible,), a generator."""

    data: PatternSet
    lagrangian: Lagrangian
    bias: Tensor
    generator: torch.Generator


@dataclass(frozen=True)
class Structure:
    W: Tensor
    visible: slice = field(default_factory=lambda: slice(None))
    layers: tuple[tuple[int, Lagrangian | None], ...] | None = None

    def lagrangian(self, main: Lagrangian) -> Lagrangian:
        """The network's Lagrangian: ``main`` everywhere, or per layer where the structure says so."""
        if self.layers is None:
            return main
        return Layered([(size, lag or main) for size, lag in self.layers])


class StorageRule:
    """A config-group option of ``weights``: a storage rule or weight structure.

    Built from its parameters alone (checked here, before any compute); :meth:`store` computes W from a
    :class:`Storage` context; :meth:`check` refuses a composition the rule cannot hold (before any compute).
    """

    name: str = ""
    #: the structure adds neurons that carry no pattern (a hidden layer)
    hidden: bool = False

    def check(self, n_patterns: int, n_neurons: int, activation: Lagrangian) -> None:
        """A ConfigError when the rule cannot store ``n_patterns`` patterns of ``n_neurons`` with ``activation``."""

    def n_total(self, n_patterns: int, n_neurons: int) -> int:
        """Neurons of the network (visible and hidden)."""
        return n_neurons

    def store(self, ctx: Storage) -> Structure:
        raise NotImplementedError


WEIGHTS: Registry[StorageRule] = Registry("weights")


def _zero_diagonal(W: Tensor, zero: bool) -> Tensor:
    return W.fill_diagonal_(0.0) if zero else W


@WEIGHTS.register("hebbian")
class Hebbian(StorageRule):
    """W = N⁻¹ Σ ξξᵀ; for {0,1} patterns of coding level f, W = Σ (ξ − f)(ξ − f)ᵀ / (N f (1 − f))."""

    name = "hebbian"

    def __init__(self, *, zero_diagonal: bool = True, scale: float = 1.0) -> None:
        self.zero_diagonal = flag("weights.zero_diagonal", zero_diagonal)
        self.scale = number("weights.scale", scale)

    def store(self, ctx: Storage) -> Structure:
        X = ctx.data.patterns
        n = X.shape[1]
        if ctx.data.kind == "binary":
            f = ctx.data.coding_level if ctx.data.coding_level is not None else float(X.mean())
            W = (X - f).T @ (X - f) / (n * f * (1 - f))
        else:
            W = X.T @ X / n
        return Structure(self.scale * _zero_diagonal(W, self.zero_diagonal))


def _pinv_rows(X: Tensor, ridge: float) -> Tensor:
    """X⁺ = (XᵀX + ridge·I)⁻¹ Xᵀ for X (N, P) with patterns as columns; without ridge the Moore–Penrose
    pseudo-inverse, which is the same for independent patterns and still projects onto their span when they are
    not (repeated or dependent sparse patterns)."""
    if ridge == 0:
        return torch.linalg.pinv(X)
    gram = X.T @ X + ridge * torch.eye(X.shape[1], dtype=X.dtype)
    return torch.linalg.solve(gram, X.T)


@WEIGHTS.register("pseudoinverse")
class Pseudoinverse(StorageRule):
    """Projection rule W = c X X⁺ − η 11ᵀ/N (symmetric; scale c, global inhibition η); graded rule (§6)
    W = (φ⁻¹(X) − b1ᵀ) X⁺ (not symmetric), so g(W ξ + b) = ξ for every pattern.

    X (N, P) holds the patterns as columns; ``ridge`` regularises X⁺ = (XᵀX + ridge I)⁻¹Xᵀ.
    With {0,1} patterns of exactly fN active neurons, relu and b = 1 − c + ηf, the patterns are exact fixed
    points whose silent neurons sit at y = b − ηf < 0 (dead) whenever c − ηf < 1 < c; they are stable while the
    load is small (a symmetric ReLU memory with dead neurons, used for Prop. 4).
    ``dead_field`` (graded rule, activations with a dead region such as relu): zero activities get the
    field θ − dead_field, strictly inside the dead region, so those neurons are dead at the fixed point.
    """

    name = "pseudoinverse"

    def __init__(self, *, graded: bool = False, ridge: float = 0.0, scale: float = 1.0, inhibition: float = 0.0,
                 dead_field: float | None = None) -> None:
        self.graded = flag("weights.graded", graded)
        self.ridge = number("weights.ridge", ridge, at_least=0)
        self.scale = number("weights.scale", scale)
        self.inhibition = number("weights.inhibition", inhibition)
        self.dead_field = None if dead_field is None else number("weights.dead_field", dead_field, above=0)
        if graded and (self.scale != 1.0 or self.inhibition != 0.0):
            raise ConfigError("weights.graded", graded, "the graded rule is exact; scale and inhibition apply to "
                              "the projection rule only (graded=false)")
        if self.dead_field is not None and not graded:
            raise ConfigError("weights.dead_field", dead_field, "applies to the graded rule only (graded=true)")

    def check(self, n_patterns: int, n_neurons: int, activation: Lagrangian) -> None:
        if n_patterns > n_neurons and self.ridge == 0:
            raise ConfigError("n_patterns", n_patterns, f"weights=pseudoinverse stores at most N = {n_neurons} "
                              "patterns without ridge (set weights.ridge > 0)", allowed=f"1..{n_neurons}")
        if self.graded and not activation.monotone:
            invertible = [n for n in ACTIVATIONS if ACTIVATIONS.get(n).monotone]
            raise ConfigError("activation", activation.name, "the graded rule (weights.graded=true) needs an "
                              "invertible activation", allowed=invertible)
        if self.dead_field is not None and not hasattr(activation, "center"):
            raise ConfigError("weights.dead_field", self.dead_field, "needs an element-wise activation with a dead "
                              "region (relu, threshold_linear, power with sigma=0)")

    def store(self, ctx: Storage) -> Structure:
        X = ctx.data.patterns.T
        if not self.graded:
            return Structure(self.scale * X @ _pinv_rows(X, self.ridge) - self.inhibition / X.shape[0])
        lag = ctx.lagrangian
        if self.dead_field is None:
            H = lag.inverse(X)
        else:
            zero = X == 0
            H = torch.where(zero, lag.center - self.dead_field, lag.inverse(torch.where(zero, 1.0, X)))
        return Structure((H - ctx.bias.unsqueeze(1)) @ _pinv_rows(X, self.ridge))


@WEIGHTS.register("storkey")
class Storkey(StorageRule):
    """Storkey (1997): W ← W + (ξξᵀ − ξ h̃ᵀ − h̃ ξᵀ)/N with local fields h̃_ij = Σ_{k≠i,j} W_ik ξ_k."""

    name = "storkey"

    def store(self, ctx: Storage) -> Structure:
        X = ctx.data.patterns
        n = X.shape[1]
        W = torch.zeros(n, n, dtype=X.dtype)
        for xi in X:  # sequential by definition of the rule (one update per pattern)
            h = W @ xi
            H = h.unsqueeze(1) - W * xi.unsqueeze(0) - (torch.diagonal(W) * xi).unsqueeze(1)  # h_ij
            W = W + (torch.outer(xi, xi) - xi.unsqueeze(1) * H.T - H * xi.unsqueeze(0)) / n
            W.fill_diagonal_(0.0)
        return Structure(W)


def goe_matrix(n: int, sigma: float, generator: torch.Generator, *, batch: tuple[int, ...] = (),
               device: torch.device | None = None) -> Tensor:
    """GOE matrices (*batch, n, n) float64: off-diagonal entries N(0, σ²/n), diagonal N(0, 2σ²/n); edge 2σ."""
    A = torch.randn(*batch, n, n, generator=generator, dtype=torch.float64, device=device) * sigma / n**0.5
    return (A + A.transpose(-1, -2)) / 2**0.5


@WEIGHTS.register("goe")
class Goe(StorageRule):
    """Gaussian orthogonal ensemble: off-diagonal entries N(0, σ²/N), diagonal N(0, 2σ²/N); edge 2σ."""

    name = "goe"

    def __init__(self, *, sigma: float = 1.0) -> None:
        self.sigma = number("weights.sigma", sigma, at_least=0)

    def store(self, ctx: Storage) -> Structure:
        return Structure(goe_matrix(ctx.data.n_neurons, self.sigma, ctx.generator))


@WEIGHTS.register("ginibre")
class Ginibre(StorageRule):
    """Non-symmetric, entries N(0, σ²/N): eigenvalues fill the disc of radius σ."""

    name = "ginibre"

    def __init__(self, *, sigma: float = 1.0) -> None:
        self.sigma = number("weights.sigma", sigma, at_least=0)

    def store(self, ctx: Storage) -> Structure:
        n = ctx.data.n_neurons
        return Structure(torch.randn(n, n, generator=ctx.generator, dtype=torch.float64) * self.sigma / n**0.5)


@WEIGHTS.register("hierarchical")
class Hierarchical(StorageRule):
    """Block-tridiagonal W of Example 1 (symmetric feedback) or Example 7 (independent W_{i,i±1}).

    ``normalise``: W_{i,i±1} = W̃/(2‖W̃‖₂) (Example 7), so ‖W‖₂ ≤ 1; then × ``scale``.
    ``layer_activations``: optional list of {name, ...params} per layer (null entries use the main one).
    """

    name = "hierarchical"

    def __init__(self, *, layers: list[int] | None = None, n_layers: int = 4, symmetric: bool = False,
                 normalise: bool = True, scale: float = 1.0, layer_activations: list | None = None) -> None:
        if layers is not None:
            if not isinstance(layers, list | tuple) or not layers:
                raise ConfigError("weights.layers", layers, "must be a list of positive layer sizes")
            self.layers: list[int] | None = [int(number("weights.layers", s, above=0, integer=True)) for s in layers]
        else:
            self.layers = None
        self.n_layers = int(number("weights.n_layers", n_layers, at_least=1, integer=True))
        self.symmetric = flag("weights.symmetric", symmetric)
        self.normalise = flag("weights.normalise", normalise)
        self.scale = number("weights.scale", scale)
        count = len(self.layers) if self.layers is not None else self.n_layers
        self.layer_activations: tuple[Lagrangian | None, ...] | None = None
        if layer_activations is not None:
            if not isinstance(layer_activations, list | tuple) or len(layer_activations) != count:
                raise ConfigError("weights.layer_activations", layer_activations,
                                  f"needs one entry per layer ({count})")
            self.layer_activations = tuple(None if spec is None else _layer_activation(spec)
                                           for spec in layer_activations)

    def sizes(self, n: int) -> list[int]:
        if self.layers is not None:
            return self.layers
        return [n // self.n_layers + (1 if i < n % self.n_layers else 0) for i in range(self.n_layers)]

    def check(self, n_patterns: int, n_neurons: int, activation: Lagrangian) -> None:
        if self.layers is not None and sum(self.layers) != n_neurons:
            raise ConfigError("weights.layers", self.layers, f"layer sizes must sum to n_neurons={n_neurons}")
        if self.layers is None and self.n_layers > n_neurons:
            raise ConfigError("weights.n_layers", self.n_layers, f"must lie in 1..n_neurons={n_neurons}")

    def store(self, ctx: Storage) -> Structure:
        n = ctx.data.n_neurons
        sizes = self.sizes(n)
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        W = torch.zeros(n, n, dtype=torch.float64)

        def block(rows: int, cols: int) -> Tensor:
            B = torch.randn(rows, cols, generator=ctx.generator, dtype=torch.float64) / max(rows, cols) ** 0.5
            return B / (2 * torch.linalg.matrix_norm(B, ord=2)) if self.normalise else B

        for i in range(len(sizes) - 1):
            r, c = slice(starts[i], starts[i] + sizes[i]), slice(starts[i + 1], starts[i + 1] + sizes[i + 1])
            up = block(sizes[i], sizes[i + 1])
            W[r, c] = up
            W[c, r] = up.T if self.symmetric else block(sizes[i + 1], sizes[i])
        per_layer = None
        if self.layer_activations is not None:
            per_layer = tuple(zip(sizes, self.layer_activations, strict=True))
        return Structure(self.scale * W, layers=per_layer)


def _layer_activation(spec: object) -> Lagrangian:
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError("weights.layer_activations", spec, "each entry is null or {name: ..., params...}",
                          allowed=ACTIVATIONS.names())
    return ACTIVATIONS.build(spec["name"], {k: v for k, v in spec.items() if k != "name"})


@WEIGHTS.register("bipartite")
class Bipartite(StorageRule):
    """Two-layer dense associative memory: N feature neurons (the main activation) and P memory neurons
    (softmax with β = ``memory_beta``), W = s [[0, Ξ], [Ξᵀ, 0]] with Ξ (N, P), s = 1/√N by default.

    With identity features the fixed points are the modern Hopfield update ξ ← s Ξ softmax(β s Ξᵀ ξ).
    """

    name = "bipartite"
    hidden = True

    def __init__(self, *, scale: float | None = None, memory_beta: float = 1.0) -> None:
        self.scale = None if scale is None else number("weights.scale", scale, above=0)
        self.memory_beta = number("weights.memory_beta", memory_beta, above=0)

    def n_total(self, n_patterns: int, n_neurons: int) -> int:
        return n_neurons + n_patterns

    def store(self, ctx: Storage) -> Structure:
        X = ctx.data.patterns.T
        n, p = X.shape
        s = n**-0.5 if self.scale is None else self.scale
        W = torch.zeros(n + p, n + p, dtype=torch.float64)
        W[:n, n:] = s * X
        W[n:, :n] = s * X.T
        memory = ACTIVATIONS.build("softmax", {"beta": self.memory_beta})
        return Structure(W, visible=slice(0, n), layers=((n, None), (p, memory)))


class Bias:
    """The bias b (config ``bias``): ``zero``, ``constant`` (every entry ``value``) or ``random``
    (N(0, scale²) entries from the weights' random stream)."""

    KINDS = ("zero", "constant", "random")

    def __init__(self, *, kind: str = "zero", value: float = 0.0, scale: float = 0.1) -> None:
        self.kind = choice("bias.kind", kind, self.KINDS)
        self.value = number("bias.value", value)
        self.scale = number("bias.scale", scale, at_least=0)

    def vector(self, n: int, generator: torch.Generator) -> Tensor:
        """b (n,) float64."""
        if self.kind == "constant":
            return torch.full((n,), self.value, dtype=torch.float64)
        if self.kind == "random":
            return self.scale * torch.randn(n, generator=generator, dtype=torch.float64)
        return torch.zeros(n, dtype=torch.float64)


def build_network(rule: StorageRule, data: PatternSet, main: Lagrangian, *, generator: torch.Generator,
                  bias: Bias | None = None, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> Network:
    """Weights of ``rule`` for ``data`` with activation ``main``, as a Network on ``device`` in ``dtype``."""
    bias = bias or Bias()
    visible_bias = bias.vector(data.n_neurons, generator)
    structure = rule.store(Storage(data, main, visible_bias, generator))
    n = structure.W.shape[0]
    vec = torch.cat([visible_bias, bias.vector(n - data.n_neurons, generator)])
    net = Network(structure.W, vec, structure.lagrangian(main), structure.visible)
    return net.to(device, dtype)
