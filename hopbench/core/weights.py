"""Weight structures and storage rules (DESIGN §4.2) and the network builder.

A rule maps a :class:`Storage` context (stored patterns (P, N_visible), activation, bias, random stream) to a
:class:`Structure`: W (N, N) float64, the visible neurons, and optionally per-layer activations (``layers``:
(size, Lagrangian or None for the main activation)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from hopbench.core.activations import ACTIVATIONS, Lagrangian, Layered
from hopbench.core.data import PatternSet
from hopbench.core.network import Network
from hopbench.errors import ConfigError
from hopbench.registry import Registry

__all__ = ["BIASES", "WEIGHTS", "Structure", "build_network", "goe_matrix"]


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


WEIGHTS: Registry[Structure] = Registry("weights")


def _zero_diagonal(W: Tensor, zero: bool) -> Tensor:
    return W.fill_diagonal_(0.0) if zero else W


@WEIGHTS.register("hebbian")
def hebbian(ctx: Storage, *, zero_diagonal: bool = True, scale: float = 1.0) -> Structure:
    """W = N⁻¹ Σ ξξᵀ; for {0,1} patterns of coding level f, W = Σ (ξ − f)(ξ − f)ᵀ / (N f (1 − f))."""
    X = ctx.data.patterns
    n = X.shape[1]
    if ctx.data.kind == "binary":
        f = ctx.data.coding_level if ctx.data.coding_level is not None else float(X.mean())
        W = (X - f).T @ (X - f) / (n * f * (1 - f))
    else:
        W = X.T @ X / n
    return Structure(scale * _zero_diagonal(W, zero_diagonal))


def _pinv_rows(X: Tensor, ridge: float) -> Tensor:
    """X⁺ = (XᵀX + ridge·I)⁻¹ Xᵀ for X (N, P) with patterns as columns."""
    gram = X.T @ X + ridge * torch.eye(X.shape[1], dtype=X.dtype)
    return torch.linalg.solve(gram, X.T)


@WEIGHTS.register("pseudoinverse")
def pseudoinverse(ctx: Storage, *, graded: bool = False, ridge: float = 0.0, scale: float = 1.0,
                  inhibition: float = 0.0, dead_field: float | None = None) -> Structure:
    """Projection rule W = c X X⁺ − η 11ᵀ/N (symmetric; scale c, global inhibition η); graded rule (§6)
    W = (φ⁻¹(X) − b1ᵀ) X⁺ (not symmetric), so g(W ξ + b) = ξ for every pattern.

    X (N, P) holds the patterns as columns; ``ridge`` regularises X⁺ = (XᵀX + ridge I)⁻¹Xᵀ.
    With {0,1} patterns of exactly fN active neurons, relu and b = 1 − c + ηf, the patterns are exact fixed
    points whose silent neurons sit at y = b − ηf < 0 (dead) whenever c − ηf < 1 < c; they are stable while the
    load is small (a symmetric ReLU memory with dead neurons, used for Prop. 4).
    ``dead_field`` (graded rule, activations with a dead region such as relu): zero activities get the
    field θ − dead_field, strictly inside the dead region, so those neurons are dead at the fixed point.
    """
    X = ctx.data.patterns.T
    n, p = X.shape
    if ridge < 0:
        raise ConfigError("weights.ridge", ridge, "must be ≥ 0")
    if p > n and ridge == 0:
        raise ConfigError("n_patterns", p, f"the pseudo-inverse rule stores at most N = {n} patterns without "
                          "ridge (set weights.ridge > 0)", allowed=f"1..{n}")
    if not graded:
        return Structure(scale * X @ _pinv_rows(X, ridge) - inhibition / n)
    if scale != 1.0 or inhibition != 0.0:
        raise ConfigError("weights.graded", graded, "the graded rule is exact; scale and inhibition apply to the "
                          "projection rule only (graded=false)")
    lag = ctx.lagrangian
    if dead_field is None:
        H = lag.inverse(X)
    else:
        if not hasattr(lag, "center") or dead_field <= 0:
            raise ConfigError("weights.dead_field", dead_field, "needs an element-wise activation with a dead "
                              "region (relu, threshold_linear, power with sigma=0) and a value > 0")
        zero = X == 0
        H = torch.where(zero, lag.center - dead_field, lag.inverse(torch.where(zero, 1.0, X)))
    return Structure((H - ctx.bias.unsqueeze(1)) @ _pinv_rows(X, ridge))


@WEIGHTS.register("storkey")
def storkey(ctx: Storage) -> Structure:
    """Storkey (1997): W ← W + (ξξᵀ − ξ h̃ᵀ − h̃ ξᵀ)/N with local fields h̃_ij = Σ_{k≠i,j} W_ik ξ_k."""
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
def goe(ctx: Storage, *, sigma: float = 1.0) -> Structure:
    """Gaussian orthogonal ensemble: off-diagonal entries N(0, σ²/N), diagonal N(0, 2σ²/N); edge 2σ."""
    return Structure(goe_matrix(ctx.data.n_neurons, sigma, ctx.generator))


@WEIGHTS.register("ginibre")
def ginibre(ctx: Storage, *, sigma: float = 1.0) -> Structure:
    """Non-symmetric, entries N(0, σ²/N): eigenvalues fill the disc of radius σ."""
    n = ctx.data.n_neurons
    return Structure(torch.randn(n, n, generator=ctx.generator, dtype=torch.float64) * sigma / n**0.5)


def _layer_sizes(n: int, layers: list[int] | None, n_layers: int) -> list[int]:
    if layers is not None:
        sizes = [int(s) for s in layers]
        if sum(sizes) != n or min(sizes) <= 0:
            raise ConfigError("weights.layers", sizes, f"layer sizes must be positive and sum to n_neurons={n}")
        return sizes
    if not 1 <= n_layers <= n:
        raise ConfigError("weights.n_layers", n_layers, f"must lie in 1..n_neurons={n}")
    return [n // n_layers + (1 if i < n % n_layers else 0) for i in range(n_layers)]


@WEIGHTS.register("hierarchical")
def hierarchical(ctx: Storage, *, layers: list[int] | None = None, n_layers: int = 4, symmetric: bool = False,
                 normalise: bool = True, scale: float = 1.0, layer_activations: list | None = None) -> Structure:
    """Block-tridiagonal W of Example 1 (symmetric feedback) or Example 7 (independent W_{i,i±1}).

    ``normalise``: W_{i,i±1} = W̃/(2‖W̃‖₂) (Example 7), so ‖W‖₂ ≤ 1; then × ``scale``.
    ``layer_activations``: optional list of {name, ...params} per layer (null entries use the main one).
    """
    n = ctx.data.n_neurons
    sizes = _layer_sizes(n, layers, n_layers)
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    W = torch.zeros(n, n, dtype=torch.float64)

    def block(rows: int, cols: int) -> Tensor:
        B = torch.randn(rows, cols, generator=ctx.generator, dtype=torch.float64) / max(rows, cols) ** 0.5
        return B / (2 * torch.linalg.matrix_norm(B, ord=2)) if normalise else B

    for i in range(len(sizes) - 1):
        r, c = slice(starts[i], starts[i] + sizes[i]), slice(starts[i + 1], starts[i + 1] + sizes[i + 1])
        up = block(sizes[i], sizes[i + 1])
        W[r, c] = up
        W[c, r] = up.T if symmetric else block(sizes[i + 1], sizes[i])
    per_layer = None
    if layer_activations is not None:
        if len(layer_activations) != len(sizes):
            raise ConfigError("weights.layer_activations", layer_activations,
                              f"needs one entry per layer ({len(sizes)})")
        per_layer = tuple(
            (size, None if spec is None else ACTIVATIONS.build(spec["name"],
                                                               {k: v for k, v in spec.items() if k != "name"}))
            for size, spec in zip(sizes, layer_activations, strict=True))
    return Structure(scale * W, layers=per_layer)


@WEIGHTS.register("bipartite")
def bipartite(ctx: Storage, *, scale: float | None = None, memory_beta: float = 1.0) -> Structure:
    """Two-layer dense associative memory: N feature neurons (the main activation) and P memory neurons
    (softmax with β = ``memory_beta``), W = s [[0, Ξ], [Ξᵀ, 0]] with Ξ (N, P), s = 1/√N by default.

    With identity features the fixed points are the modern Hopfield update ξ ← s Ξ softmax(β s Ξᵀ ξ).
    """
    X = ctx.data.patterns.T
    n, p = X.shape
    s = n**-0.5 if scale is None else scale
    W = torch.zeros(n + p, n + p, dtype=torch.float64)
    W[:n, n:] = s * X
    W[n:, :n] = s * X.T
    memory = ACTIVATIONS.build("softmax", {"beta": memory_beta})
    return Structure(W, visible=slice(0, n), layers=((n, None), (p, memory)))


BIASES = ("zero", "constant", "random")


def _bias(n: int, kind: str, value: float, scale: float, generator: torch.Generator) -> Tensor:
    if kind == "zero":
        return torch.zeros(n, dtype=torch.float64)
    if kind == "constant":
        return torch.full((n,), float(value), dtype=torch.float64)
    if kind == "random":
        return scale * torch.randn(n, generator=generator, dtype=torch.float64)
    raise ConfigError("bias.kind", kind, "unknown bias", allowed=BIASES)


def build_network(name: str, params: dict | None, data: PatternSet, main: Lagrangian, *,
                  generator: torch.Generator, bias: dict | None = None,
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Network:
    """Weights ``name`` for ``data`` with activation ``main``, as a Network on ``device`` in ``dtype``."""
    b = dict(bias or {})
    unknown = set(b) - {"kind", "value", "scale"}
    if unknown:
        raise ConfigError(f"bias.{sorted(unknown)[0]}", b[sorted(unknown)[0]], "not a bias parameter",
                          allowed=["kind", "value", "scale"])
    kind, value, scale = b.get("kind", "zero"), b.get("value", 0.0), b.get("scale", 0.1)
    visible_bias = _bias(data.n_neurons, kind, value, scale, generator)
    structure = WEIGHTS.build(name, params, ctx=Storage(data, main, visible_bias, generator))
    n = structure.W.shape[0]
    vec = torch.cat([visible_bias, _bias(n - data.n_neurons, kind, value, scale, generator)])
    net = Network(structure.W, vec, structure.lagrangian(main), structure.visible)
    return net.to(device, dtype)
