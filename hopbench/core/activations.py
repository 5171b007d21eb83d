"""Activations as Lagrangians (docs/design.md §4.1; paper eq. 2–3).

Each activation is a Lagrangian ``L: (B, N) -> (B,)`` with activation ``g = ∇L`` (B, N) and Hessian
``Λ = ∇²L`` (a :class:`Curvature`: diagonal (B, N) for element-wise activations, dense (B, N, N) for
softmax or mixed layers). The tests check ``g`` against autograd of ``L`` and ``Λ`` against autograd of
``g`` for every entry of :data:`ACTIVATIONS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import Tensor

from hopbench.errors import ConfigError, number
from hopbench.registry import Registry

__all__ = ["ACTIVATIONS", "Curvature", "Lagrangian", "Layered", "Relu", "build_activation"]


@dataclass(frozen=True)
class Curvature:
    """The Hessian ``Λ(h)`` of a Lagrangian at a batch of points.

    ``values`` is (B, N) when ``diagonal`` (Λ = diag(values)) and (B, N, N) otherwise.
    """

    values: Tensor
    diagonal: bool

    def mv(self, v: Tensor) -> Tensor:
        """``Λ v`` for v (B, N)."""
        if self.diagonal:
            return self.values * v
        return torch.matmul(self.values, v.unsqueeze(-1)).squeeze(-1)

    def dense(self) -> Tensor:
        """Λ as a (B, N, N) matrix."""
        return torch.diag_embed(self.values) if self.diagonal else self.values

    def left(self, M: Tensor) -> Tensor:
        """``Λ M`` for M (N, N) or (B, N, N) -> (B, N, N)."""
        return self.values.unsqueeze(-1) * M if self.diagonal else torch.matmul(self.values, M)

    def right(self, M: Tensor) -> Tensor:
        """``M Λ`` for M (N, N) or (B, N, N) -> (B, N, N)."""
        return M * self.values.unsqueeze(-2) if self.diagonal else torch.matmul(M, self.values)

    def sandwich(self, M: Tensor) -> Tensor:
        """``Λ M Λ`` (B, N, N) for M (N, N) or (B, N, N); for diagonal Λ one buffer, scaled in place."""
        if not self.diagonal:
            return self.left(self.right(M))
        out = self.values.unsqueeze(-1) * M
        return out.mul_(self.values.unsqueeze(-2))

    def eigenvalues(self) -> Tensor:
        """Eigenvalues of Λ (B, N), ascending for dense Λ."""
        return self.values if self.diagonal else torch.linalg.eigvalsh(self.values)

    def sqrt(self) -> Curvature:
        """``Λ^{1/2}`` of a positive semi-definite Λ (negative eigenvalues are clipped to 0)."""
        if self.diagonal:
            return Curvature(self.values.clamp_min(0).sqrt(), True)
        lam, vec = torch.linalg.eigh(self.values)
        return Curvature((vec * lam.clamp_min(0).sqrt().unsqueeze(-2)) @ vec.transpose(-1, -2), False)

    def null_projector(self, tol: float) -> Tensor:
        """Orthogonal projector P_d (B, N, N) onto the near-null space {|λ(Λ)| <= tol} (dead directions)."""
        if self.diagonal:
            return torch.diag_embed((self.values.abs() <= tol).to(self.values.dtype))
        lam, vec = torch.linalg.eigh(self.values)
        dead = (lam.abs() <= tol).to(vec.dtype)
        return (vec * dead.unsqueeze(-2)) @ vec.transpose(-1, -2)

    def nullity(self, tol: float) -> Tensor:
        """Number of eigenvalues of Λ with |λ| <= tol (the number of dead neurons), (B,)."""
        return (self.eigenvalues().abs() <= tol).sum(-1)


class Lagrangian:
    """A Lagrangian ``L(h)`` with activation ``g = ∇L`` and Hessian ``Λ = ∇²L`` (eq. 2–3).

    Attributes:
        diagonal: Λ is diagonal (element-wise activation).
        monotone: Λ ⪰ 0 everywhere (condition (3), needed for energy (4) to be a Lyapunov function).
    """

    name: str = ""
    diagonal: bool = True
    monotone: bool = True

    def lagrangian(self, h: Tensor) -> Tensor:
        """L(h): (B, N) -> (B,)."""
        raise NotImplementedError

    def activation(self, h: Tensor) -> Tensor:
        """g(h) = ∇L(h): (B, N) -> (B, N)."""
        raise NotImplementedError

    def hessian(self, h: Tensor) -> Curvature:
        """Λ(h) = ∇²L(h)."""
        raise NotImplementedError

    def hvp(self, h: Tensor, v: Tensor) -> Tensor:
        """Λ(h) v for h, v (B, N) without forming dense matrices where possible."""
        return self.hessian(h).mv(v)

    def inverse(self, a: Tensor) -> Tensor:
        """A preimage h with g(h) = a (needed by the graded storage rule of §6)."""
        raise ConfigError("activation", self.name, "has no inverse; the graded rule needs an invertible "
                          "activation", allowed="power, sigmoid, tanh, identity, threshold_linear, relu, "
                          "smooth_leaky_relu, softmax")

    def dead_directions(self, h: Tensor, tol: float) -> Tensor:
        """Directions V (B, N, K) along which g is constant: g(h + V c) = g(h) for c ≥ 0 (Definition, §2).

        Columns of alive neurons are zero, so ``V c`` for any c ≥ 0 moves only dead neurons.
        """
        raise NotImplementedError


class Elementwise(Lagrangian):
    """L(h) = Σ_i ℓ(h_i): Λ is diagonal. Subclasses give ℓ, ℓ' = g, ℓ'' and the dead side."""

    center: float = 0.0  # dead neurons sit on the side sign(h - center) of this point

    def ell(self, h: Tensor) -> Tensor:
        raise NotImplementedError

    def slope(self, h: Tensor) -> Tensor:
        """g'(h), element-wise (the diagonal of Λ)."""
        raise NotImplementedError

    def lagrangian(self, h: Tensor) -> Tensor:
        return self.ell(h).sum(-1)

    def hessian(self, h: Tensor) -> Curvature:
        return Curvature(self.slope(h), diagonal=True)

    def hvp(self, h: Tensor, v: Tensor) -> Tensor:
        return self.slope(h) * v

    def dead_directions(self, h: Tensor, tol: float) -> Tensor:
        dead = self.slope(h).abs() <= tol
        side = torch.where(h > self.center, 1.0, -1.0).to(h.dtype)  # at the threshold, dead lies below
        return torch.diag_embed(side * dead.to(h.dtype))

    def inverse(self, a: Tensor) -> Tensor:
        """Numerical inverse for strictly increasing activations: safeguarded Newton on a bracket."""
        if not self.monotone:
            return super().inverse(a)
        lo, hi = torch.full_like(a, -1.0), torch.full_like(a, 1.0)
        for _ in range(200):  # expand the bracket geometrically until it contains the root
            lo = torch.where(self.activation(lo) > a, 2 * lo, lo)
            hi = torch.where(self.activation(hi) < a, 2 * hi, hi)
        h = (lo + hi) / 2
        for _ in range(100):
            r = self.activation(h) - a
            lo, hi = torch.where(r < 0, h, lo), torch.where(r > 0, h, hi)
            step = h - r / self.slope(h).clamp_min(torch.finfo(h.dtype).tiny)
            inside = (step > lo) & (step < hi)
            h = torch.where(inside, step, (lo + hi) / 2)
        return h


class Identity(Elementwise):
    """L = ½|h|², g = h, Λ = I."""

    name = "identity"

    def ell(self, h: Tensor) -> Tensor:
        return 0.5 * h * h

    def activation(self, h: Tensor) -> Tensor:
        return h

    def slope(self, h: Tensor) -> Tensor:
        return torch.ones_like(h)

    def inverse(self, a: Tensor) -> Tensor:
        return a


class ThresholdLinear(Elementwise):
    """L = ½ k [h − θ]₊², g = k [h − θ]₊, Λ = k·1[h > θ] (gain k, threshold θ). ``relu`` is k=1, θ=0."""

    name = "threshold_linear"

    def __init__(self, *, gain: float = 1.0, threshold: float = 0.0) -> None:
        self.gain = number("activation.gain", gain, above=0)
        self.threshold = self.center = number("activation.threshold", threshold)

    def ell(self, h: Tensor) -> Tensor:
        return 0.5 * self.gain * F.relu(h - self.threshold) ** 2

    def activation(self, h: Tensor) -> Tensor:
        return self.gain * F.relu(h - self.threshold)

    def slope(self, h: Tensor) -> Tensor:
        return self.gain * (h > self.threshold).to(h.dtype)

    def inverse(self, a: Tensor) -> Tensor:
        """h = θ + a/k for a ≥ 0 (a = 0 maps to the threshold, one point of the dead half-line)."""
        if (a < 0).any():
            raise ConfigError("activation", self.name, "inverse needs non-negative activities")
        return self.threshold + a / self.gain


def _bernoulli_over_factorial(count: int) -> list[float]:
    """Coefficients c_m = B_m / m! of t/(eᵗ − 1) = Σ c_m tᵐ (B_1 = −½)."""
    b = [Fraction(1)]
    for m in range(1, count):
        b.append(-sum(math.comb(m + 1, k) * b[k] for k in range(m)) / (m + 1))
    return [float(bm / math.factorial(m)) for m, bm in enumerate(b)]


_BERNOULLI = _bernoulli_over_factorial(48)


class Power(Elementwise):
    """φ(h) = (σ·softplus((h − θ)/σ))ⁿ: exponent n, threshold θ, smoothness σ (σ → 0: [h − θ]₊ⁿ; §6).

    Lagrangian, with z = (h − θ)/σ and P = softplus(z) (so dP = sigmoid(z) dz and 1 − e^{−P} = sigmoid(z)):
    L = σ^{n+1} ∫₀^P pⁿ/(1 − e^{−p}) dp = σ^{n+1} [P^{n+1}/(n+1) + G_n(P)], G_n(P) = ∫₀^P pⁿ/(eᵖ − 1) dp.
    G_n uses the Bernoulli series of p/(eᵖ − 1) for P ≤ 2 and, for P > 2,
    G_n = Γ(n+1)[ζ(n+1) − Σ_k Q(n+1, kP)/k^{n+1}] (Q: regularised upper incomplete gamma).
    Both are accurate to ~1e-15 relative and differentiable by autograd.
    """

    name = "power"
    _SPLIT = 2.0

    def __init__(self, *, n: float = 1.0, threshold: float = 0.0, sigma: float = 0.1) -> None:
        self.n = number("activation.n", n, at_least=1)  # φ' must stay bounded at the threshold
        self.sigma = number("activation.sigma", sigma, at_least=0)  # 0 is the hard threshold [h − θ]₊ⁿ
        self.threshold = self.center = number("activation.threshold", threshold)

    def _softplus(self, h: Tensor) -> tuple[Tensor, Tensor]:
        z = (h - self.threshold) / self.sigma
        return F.softplus(z, threshold=30.0).clamp_min(torch.finfo(h.dtype).tiny), z

    def _bose_integral(self, P: Tensor) -> Tensor:
        """G_n(P) = ∫₀^P pⁿ/(eᵖ − 1) dp for P ≥ 0."""
        n = self.n
        small = P.clamp_max(self._SPLIT)
        series = sum(c * small ** (n + m) / (n + m) for m, c in enumerate(_BERNOULLI))
        large = P.clamp_min(self._SPLIT)
        a = torch.full_like(large, n + 1)
        tail = sum(torch.special.gammaincc(a, k * large) / k ** (n + 1) for k in range(1, 24))
        complete = math.gamma(n + 1) * torch.special.zeta(torch.tensor(n + 1.0, dtype=P.dtype), 1.0).item()
        return torch.where(P <= self._SPLIT, series, complete - math.gamma(n + 1) * tail)

    def ell(self, h: Tensor) -> Tensor:
        n, s = self.n, self.sigma
        if s == 0:
            return F.relu(h - self.threshold) ** (n + 1) / (n + 1)
        P, _ = self._softplus(h)
        return s ** (n + 1) * (P ** (n + 1) / (n + 1) + self._bose_integral(P))

    def activation(self, h: Tensor) -> Tensor:
        if self.sigma == 0:
            return F.relu(h - self.threshold) ** self.n
        P, _ = self._softplus(h)
        return (self.sigma * P) ** self.n

    def slope(self, h: Tensor) -> Tensor:
        n = self.n
        if self.sigma == 0:
            x = F.relu(h - self.threshold)
            return n * x ** (n - 1) * (x > 0).to(h.dtype)
        P, z = self._softplus(h)
        return n * (self.sigma * P) ** (n - 1) * torch.sigmoid(z)

    def inverse(self, a: Tensor) -> Tensor:
        """h = θ + σ·softplus⁻¹(a^{1/n}/σ) for a > 0 (θ + a^{1/n} when σ = 0)."""
        if (a <= 0).any():
            raise ConfigError("activation", self.name, "inverse needs positive activities (use lognormal data)")
        root = a ** (1 / self.n)
        if self.sigma == 0:
            return self.threshold + root
        s = root / self.sigma
        return self.threshold + self.sigma * (s + torch.log(-torch.expm1(-s)))


class Sigmoid(Elementwise):
    """L = β⁻¹ Σ log(1 + e^{βh}), g = sigmoid(βh), Λ = β g(1 − g) (Example 3)."""

    name = "sigmoid"

    def __init__(self, *, beta: float = 1.0) -> None:
        self.beta = number("activation.beta", beta, above=0)

    def ell(self, h: Tensor) -> Tensor:
        return F.softplus(self.beta * h, threshold=30.0) / self.beta

    def activation(self, h: Tensor) -> Tensor:
        return torch.sigmoid(self.beta * h)

    def slope(self, h: Tensor) -> Tensor:
        s = torch.sigmoid(self.beta * h)
        return self.beta * s * torch.sigmoid(-self.beta * h)

    def inverse(self, a: Tensor) -> Tensor:
        return torch.logit(a) / self.beta


class Tanh(Elementwise):
    """L = β⁻¹ Σ log cosh(βh), g = tanh(βh), Λ = β / cosh²(βh) (gain β).

    The default gain is 4: with β ≤ 1 the zero state of a Hebbian memory (largest eigenvalue of W about 1)
    is stable and nothing is retrieved.
    """

    name = "tanh"

    def __init__(self, *, beta: float = 4.0) -> None:
        self.beta = number("activation.beta", beta, above=0)

    def ell(self, h: Tensor) -> Tensor:
        x = (self.beta * h).abs()
        return (x + torch.log1p(torch.exp(-2 * x)) - math.log(2.0)) / self.beta

    def activation(self, h: Tensor) -> Tensor:
        return torch.tanh(self.beta * h)

    def slope(self, h: Tensor) -> Tensor:
        e = torch.exp(-2 * (self.beta * h).abs())
        return self.beta * 4 * e / (1 + e) ** 2

    def inverse(self, a: Tensor) -> Tensor:
        return torch.atanh(a) / self.beta


class Gelu(Elementwise):
    """g = hΦ(h), L = ((h² − 1)Φ(h) + hφ(h))/2 (L → 0 as h → −∞), Λ = Φ(h) + hφ(h). Not monotone."""

    name = "gelu"
    monotone = False

    @staticmethod
    def _phi(h: Tensor) -> tuple[Tensor, Tensor]:
        return torch.special.ndtr(h), torch.exp(-0.5 * h * h) / math.sqrt(2 * math.pi)

    def ell(self, h: Tensor) -> Tensor:
        cdf, pdf = self._phi(h)
        return 0.5 * ((h * h - 1) * cdf + h * pdf)

    def activation(self, h: Tensor) -> Tensor:
        return h * torch.special.ndtr(h)

    def slope(self, h: Tensor) -> Tensor:
        cdf, pdf = self._phi(h)
        return cdf + h * pdf


class SmoothLeakyRelu(Elementwise):
    """Example 7: g(u) = u(5 + 3 erf(3u/8))/8, g'(u) = g(u)/u + 9u exp(−9u²/64)/(32√π).

    With a = 3/8: L = 5u²/16 + (3/8)[(u²/2) erf(au) + u e^{−a²u²}/(2a√π) − erf(au)/(4a²)].
    The paper says Λ is not positive definite here; numerically g' ≥ 0.153 > 0 everywhere (min near
    u ≈ −2.67), so Λ ≻ 0 (tests check it) and the activation is strictly increasing and invertible.
    """

    name = "smooth_leaky_relu"
    _A = 3.0 / 8.0

    def ell(self, h: Tensor) -> Tensor:
        a = self._A
        erf = torch.special.erf(a * h)
        gauss = torch.exp(-(a * h) ** 2)
        integral = 0.5 * h * h * erf + h * gauss / (2 * a * math.sqrt(math.pi)) - erf / (4 * a * a)
        return 5 * h * h / 16 + 3 * integral / 8

    def activation(self, h: Tensor) -> Tensor:
        return h * (5 + 3 * torch.special.erf(self._A * h)) / 8

    def slope(self, h: Tensor) -> Tensor:
        return (5 + 3 * torch.special.erf(self._A * h)) / 8 + 9 * h * torch.exp(-9 * h * h / 64) / (
            32 * math.sqrt(math.pi))


class Softmax(Lagrangian):
    """L = β⁻¹ log Σ e^{βh}, g = softmax(βh), Λ = β(diag(g) − g gᵀ) (dense; Example 4).

    The all-ones direction is always dead (shift invariance), so Λ has nullity ≥ 1.
    """

    name = "softmax"
    diagonal = False

    def __init__(self, *, beta: float = 1.0) -> None:
        self.beta = number("activation.beta", beta, above=0)

    def lagrangian(self, h: Tensor) -> Tensor:
        return torch.logsumexp(self.beta * h, dim=-1) / self.beta

    def activation(self, h: Tensor) -> Tensor:
        return torch.softmax(self.beta * h, dim=-1)

    def hessian(self, h: Tensor) -> Curvature:
        s = self.activation(h)
        return Curvature(self.beta * (torch.diag_embed(s) - s.unsqueeze(-1) * s.unsqueeze(-2)), diagonal=False)

    def hvp(self, h: Tensor, v: Tensor) -> Tensor:
        s = self.activation(h)
        return self.beta * s * (v - (s * v).sum(-1, keepdim=True))

    def inverse(self, a: Tensor) -> Tensor:
        """h = log(a)/β (a right inverse: any shift h + c1 has the same image)."""
        return torch.log(a) / self.beta

    def dead_directions(self, h: Tensor, tol: float) -> Tensor:
        return torch.ones(*h.shape, 1, dtype=h.dtype, device=h.device)


class Layered(Lagrangian):
    """Per-layer activations: L(h) = Σ_k L_k(h_k) over consecutive blocks of neurons (Example 1).

    ``parts`` is a list of (size, Lagrangian). Λ is block-diagonal; diagonal if every block is.
    """

    name = "layered"

    def __init__(self, parts: list[tuple[int, Lagrangian]]) -> None:
        self.parts = parts
        self.sizes = [size for size, _ in parts]
        self.diagonal = all(lag.diagonal for _, lag in parts)
        self.monotone = all(lag.monotone for _, lag in parts)
        self.name = "+".join(lag.name for _, lag in parts)

    def _split(self, h: Tensor) -> tuple[Tensor, ...]:
        return torch.split(h, self.sizes, dim=-1)

    def lagrangian(self, h: Tensor) -> Tensor:
        return sum(lag.lagrangian(x) for (_, lag), x in zip(self.parts, self._split(h), strict=True))

    def activation(self, h: Tensor) -> Tensor:
        return torch.cat([lag.activation(x) for (_, lag), x in zip(self.parts, self._split(h), strict=True)], -1)

    def hvp(self, h: Tensor, v: Tensor) -> Tensor:
        pieces = zip(self.parts, self._split(h), self._split(v), strict=True)
        return torch.cat([lag.hvp(x, w) for (_, lag), x, w in pieces], -1)

    def hessian(self, h: Tensor) -> Curvature:
        blocks = [lag.hessian(x) for (_, lag), x in zip(self.parts, self._split(h), strict=True)]
        if self.diagonal:
            return Curvature(torch.cat([c.values for c in blocks], -1), diagonal=True)
        return Curvature(torch.func.vmap(torch.block_diag)(*[c.dense() for c in blocks]), diagonal=False)

    def inverse(self, a: Tensor) -> Tensor:
        return torch.cat([lag.inverse(x) for (_, lag), x in zip(self.parts, self._split(a), strict=True)], -1)

    def dead_directions(self, h: Tensor, tol: float) -> Tensor:
        blocks = [lag.dead_directions(x, tol) for (_, lag), x in zip(self.parts, self._split(h), strict=True)]
        return torch.func.vmap(torch.block_diag)(*blocks)


ACTIVATIONS: Registry[Lagrangian] = Registry("activation")
ACTIVATIONS.register("identity")(Identity)
ACTIVATIONS.register("threshold_linear")(ThresholdLinear)
ACTIVATIONS.register("power")(Power)
ACTIVATIONS.register("sigmoid")(Sigmoid)
ACTIVATIONS.register("tanh")(Tanh)
ACTIVATIONS.register("gelu")(Gelu)
ACTIVATIONS.register("smooth_leaky_relu")(SmoothLeakyRelu)
ACTIVATIONS.register("softmax")(Softmax)


class Relu(ThresholdLinear):
    """L = ½ Σ relu(h)² (Example 2): threshold_linear with gain 1 and threshold 0."""

    name = "relu"

    def __init__(self) -> None:
        super().__init__()


ACTIVATIONS.register("relu")(Relu)


def build_activation(name: str, params: dict | None = None) -> Lagrangian:
    """The activation ``name`` with its parameters (e.g. ``{"beta": 2.0}``)."""
    return ACTIVATIONS.build(name, params)
