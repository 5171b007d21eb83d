"""R/S strategies (docs/design.md §3; paper Examples 5–7, Prop. 5.2, eq. 13).

A strategy is the matrix R(x) in ẋ = R(x) r(x). It acts on a batch: ``apply(x, h, v)`` = R(x) v for
v (B, N) (the hot path, no N×N matrices per state where avoidable) and ``matrix(x, h)`` = R(x) (B, N, N)
for Jacobians. ``h`` is the pre-activation (y, or Wu + b).

Each strategy states which energy the paper pairs it with (``intended``) and which energies the mathematics
backs, with their requirements (``backing``): with ∇E = −G r (see energies.py) an energy is non-increasing
when GᵀR + RᵀG ⪰ 0 (condition (11)). What the tests check numerically:

- ``identity`` (u-state): dE2/dt = −fᵀW f, so E2 is non-increasing only for W ⪰ 0 — condition (11) with R = I
  and G = W says the same. What identity backs whenever Λ ⪰ 0 and W = Wᵀ is E1 (= eq. 4 at y = Wu + b), so
  ``energy=auto`` gives E1.
- ``y_i_minus_w_lambda`` (R = I − WΛ, as written for Figure 1) gives dE14/dt = −hᵀ(I − WΛ)²h, which is
  indefinite in general; ``y_i_minus_lambda_wt`` (R = I − ΛWᵀ) gives −|(I − ΛWᵀ)h|² ≤ 0.
- ``lyapunov_equation``: E2 is non-increasing whenever RW + WR = Q ≻ 0 has a symmetric solution; W ≻ 0 is what
  makes R ≻ 0 (so R is invertible and fixed points are preserved).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from hopbench.core.models.energies import Energy
from hopbench.core.network import Network
from hopbench.errors import number
from hopbench.registry import Registry

__all__ = ["STRATEGIES", "Backing", "Requirement", "Strategy", "assess_backing"]


@dataclass(frozen=True)
class Requirement:
    """A condition of a theorem, checked on the network and energy."""

    text: str
    check: Callable[[Network, Energy], bool]


def _sym_eigs(net: Network) -> Tensor:
    W = net.W.double()
    return torch.linalg.eigvalsh(0.5 * (W + W.T))


def _tol(net: Network) -> float:
    return 1e-9 * max(1.0, float(net.W.abs().max()))


SYMMETRIC_W = Requirement("W symmetric", lambda net, e: net.is_symmetric())
MONOTONE = Requirement("Λ ⪰ 0 everywhere (monotone activation)", lambda net, e: net.lagrangian.monotone)
PSD_W = Requirement("W symmetric positive semi-definite",
                    lambda net, e: net.is_symmetric() and float(_sym_eigs(net).min()) >= -_tol(net))
PD_W = Requirement("W symmetric positive definite",
                   lambda net, e: net.is_symmetric() and float(_sym_eigs(net).min()) > _tol(net))
S_IDENTITY = Requirement("S = I", lambda net, e: e.s_is_identity)
OMEGA_NONPOSITIVE = Requirement(
    "Λ ⪰ 0 and numerical abscissa ω(W) = λmax((W+Wᵀ)/2) ≤ 0 (Ex. 6.2; sufficient for all states)",
    lambda net, e: net.lagrangian.monotone and float(_sym_eigs(net).max()) <= _tol(net))
FACTOR_EXACT = Requirement("∇E = −G r holds exactly (W symmetric, or the energy is e3 / eq14)",
                           lambda net, e: e.factor_exact)


@dataclass(frozen=True)
class Backing:
    """Whether theory backs a (strategy, energy) pairing, and why not."""

    backed: bool
    reasons: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"theory_backed": self.backed, "theory_reasons": list(self.reasons)}


class Strategy:
    """R(x) for ẋ = R(x) r(x).

    A strategy is a config-group option (``strategy``): built from its parameters alone (checked there), then
    bound to a network and energy with :meth:`bind`, which returns a copy that evaluates R on that network.
    """

    name: str = ""
    intended: dict[str, str] = {}  # state -> energy the paper pairs it with
    backing: dict[str, dict[str, tuple[Requirement, ...]]] = {}  # state -> energy -> requirements
    is_identity = False
    net: Network
    energy: Energy

    def bind(self, net: Network, energy: Energy) -> Strategy:
        """A copy of this strategy on ``net`` with ``energy`` (state-independent matrices are computed here)."""
        bound = copy.copy(self)
        bound.net, bound.energy = net, energy
        bound._prepare()
        return bound

    def _prepare(self) -> None:
        """Network-dependent set-up of a bound copy."""

    def apply(self, x: Tensor, h: Tensor, v: Tensor) -> Tensor:
        raise NotImplementedError

    def matrix(self, x: Tensor, h: Tensor) -> Tensor:
        raise NotImplementedError

    def _eye(self, x: Tensor) -> Tensor:
        return torch.eye(x.shape[-1], dtype=x.dtype, device=x.device).expand(x.shape[0], -1, -1)


class Identity(Strategy):
    """R = I: the original dynamics in y (eq. 1), and u̇ = g(Wu + b) − u in u."""

    name = "identity"
    intended = {"y": "eq4", "u": "e1"}
    backing = {"y": {"eq4": (SYMMETRIC_W, MONOTONE)},
               "u": {"e1": (SYMMETRIC_W, MONOTONE), "e2": (PSD_W,)}}
    is_identity = True

    def apply(self, x: Tensor, h: Tensor, v: Tensor) -> Tensor:
        return v

    def matrix(self, x: Tensor, h: Tensor) -> Tensor:
        return self._eye(x)


class _Constant(Strategy):
    """A state-independent R (N, N), computed once in float64."""

    R: Tensor

    def apply(self, x: Tensor, h: Tensor, v: Tensor) -> Tensor:
        return v @ self.R.T

    def matrix(self, x: Tensor, h: Tensor) -> Tensor:
        return self.R.expand(x.shape[0], -1, -1)


class WeightR(_Constant):
    """R = W (Example 5.1): RᵀG + GᵀR = 2W² ⪰ 0 for E2. Singular W stalls the flow (false memories)."""

    name = "w"
    intended = {"u": "e2"}
    backing = {"u": {"e2": (SYMMETRIC_W,)}}

    def _prepare(self) -> None:
        self.R = self.net.W


def polar_factor(M: Tensor) -> Tensor:
    """The orthogonal factor O of M = O P (P ⪰ 0), from the SVD M = U Σ Vᵀ: O = U Vᵀ. M (..., N, N)."""
    U, _, Vh = torch.linalg.svd(M)
    return U @ Vh


class Polar(_Constant):
    """R = O from the polar decomposition W = O P (Example 5.2): RᵀW + WᵀR = 2P ⪰ 0 for E2."""

    name = "polar"
    intended = {"u": "e2"}
    backing = {"u": {"e2": (SYMMETRIC_W,)}}

    def _prepare(self) -> None:
        self.R = polar_factor(self.net.W.double()).to(self.net.dtype)


class LyapunovR(_Constant):
    """R solving R W + W R = Q with Q = q I (Example 5.4), by Bartels–Stewart (scipy.linalg.solve_sylvester)."""

    name = "lyapunov_equation"
    intended = {"u": "e2"}

    def __init__(self, *, q: float = 1.0) -> None:
        self.q = number("strategy.q", q, above=0)

    def _prepare(self) -> None:
        net = self.net
        W = net.W.double().cpu().numpy()
        self.Q = self.q * np.eye(W.shape[0])
        R = scipy.linalg.solve_sylvester(W, W, self.Q)
        R = 0.5 * (R + R.T) if np.allclose(W, W.T) else R
        self.residual = float(np.abs(R @ W + W @ R - self.Q).max() / max(1.0, self.q))
        self.R = torch.as_tensor(R, dtype=net.dtype, device=net.device)
        solved = Requirement("RW + WR = Q solved to 1e-8 (no eigenvalue pair λi + λj ≈ 0)",
                             lambda net_, e: self.residual < 1e-8)
        self.backing = {"u": {"e2": (SYMMETRIC_W, PD_W, solved)}}


class IMinusWtLambda(Strategy):
    """R = I − WᵀΛ(Wu + b) (Example 6.1, Example 7): u̇ = −∇E3 with S = I, any W.

    R may be singular; then the flow can stop where f ≠ 0 (the fixed-point residual shows it).
    """

    name = "i_minus_wt_lambda"
    intended = {"u": "e3"}
    backing = {"u": {"e3": (S_IDENTITY,)}}

    def apply(self, x: Tensor, h: Tensor, v: Tensor) -> Tensor:
        return v - self.net.lagrangian.hvp(h, v) @ self.net.W

    def matrix(self, x: Tensor, h: Tensor) -> Tensor:
        return self._eye(x) - self.net.lagrangian.hessian(h).right(self.net.W.T)


class LambdaR(Strategy):
    """R = Λ(Wu + b) (Example 6.2): E3 (S = I) is non-increasing when Λ − ½Λ(W + Wᵀ)Λ ⪰ 0.

    Sufficient for every state: Λ ⪰ 0 and ω(W) ≤ 0; the Lyapunov check measures it at sampled states.
    Dead neurons make R singular.
    """

    name = "lambda"
    intended = {"u": "e3"}
    backing = {"u": {"e3": (S_IDENTITY, OMEGA_NONPOSITIVE)}}

    def apply(self, x: Tensor, h: Tensor, v: Tensor) -> Tensor:
        return self.net.lagrangian.hvp(h, v)

    def matrix(self, x: Tensor, h: Tensor) -> Tensor:
        return self.net.lagrangian.hessian(h).dense()


class PolarF(Strategy):
    """R(x) = O(x) from the polar decomposition of the energy's G(x) (Prop. 5.2): backs any energy whose
    gradient is −G r exactly (every energy for symmetric W; e3 and eq14 for any W).

    One SVD per state and evaluation: O(B N³); meant for small N.
    """

    name = "polar_f"
    intended = {"u": "combined", "y": "eq14"}
    backing = {"u": {"*": (FACTOR_EXACT,)}, "y": {"*": (FACTOR_EXACT,)}}

    def matrix(self, x: Tensor, h: Tensor) -> Tensor:
        return polar_factor(self.energy.factor(x))

    def apply(self, x: Tensor, h: Tensor, v: Tensor) -> Tensor:
        return torch.matmul(self.matrix(x, h), v.unsqueeze(-1)).squeeze(-1)


class YIMinusWLambda(Strategy):
    """R = I − WΛ(y) in eq. 13, as written for Figure 1. Not backed: dE14/dt = −hᵀ(I − WΛ)²h."""

    name = "y_i_minus_w_lambda"
    intended = {"y": "eq14"}
    backing = {"y": {}}

    def apply(self, x: Tensor, h: Tensor, v: Tensor) -> Tensor:
        return v - self.net.lagrangian.hvp(h, v) @ self.net.W.T

    def matrix(self, x: Tensor, h: Tensor) -> Tensor:
        return self._eye(x) - self.net.lagrangian.hessian(h).right(self.net.W)


class YIMinusLambdaWt(Strategy):
    """R = I − Λ(y)Wᵀ in eq. 13: ẏ = −∇E14 (S = I), so eq. 14 is non-increasing for any W."""

    name = "y_i_minus_lambda_wt"
    intended = {"y": "eq14"}
    backing = {"y": {"eq14": (S_IDENTITY,)}}

    def apply(self, x: Tensor, h: Tensor, v: Tensor) -> Tensor:
        return v - self.net.lagrangian.hvp(h, v @ self.net.W)

    def matrix(self, x: Tensor, h: Tensor) -> Tensor:
        return self._eye(x) - self.net.lagrangian.hessian(h).left(self.net.W.T)


STRATEGIES: Registry[Strategy] = Registry("strategy")
for _cls in (Identity, WeightR, Polar, LyapunovR, IMinusWtLambda, LambdaR, PolarF, YIMinusWLambda,
             YIMinusLambdaWt):
    STRATEGIES.register(_cls.name)(_cls)


def assess_backing(strategy: Strategy, state: str, energy: Energy) -> Backing:
    """Does a theorem make ``energy`` non-increasing under ``strategy`` on this network? (never raises)"""
    table = strategy.backing.get(state, {})
    if "*" in table:
        requirements = table["*"]
    elif energy.canonical in table:
        requirements = table[energy.canonical]
    else:
        backed = ", ".join(sorted(table)) or "none"
        return Backing(False, (f"no theorem makes {energy.name} non-increasing under strategy {strategy.name} "
                               f"in the {state}-state (backed energies: {backed})",))
    failed = tuple(f"requirement fails: {req.text}" for req in requirements if not req.check(strategy.net, energy))
    return Backing(not failed, failed)
