"""Energies of the three models (paper eq. 4, eq. 10, eq. 14).

Every energy works on a batch of states x (B, N) and gives
- ``value(x)`` (B,),
- ``gradient(x)`` (B, N): the analytic gradient (tests compare it with autograd of ``value``),
- ``factor(x)`` (B, N, N): the matrix G with ∇E = −G(x) r(x), where r is the model's fixed-point
  residual (y-state: r = W g(y) − y + b; u-state: r = g(Wu + b) − u). With ẋ = R r, dE/dt = −rᵀGᵀR r,
  so E is non-increasing when GᵀR + RᵀG ⪰ 0 (Prop. 5.1, eq. 11) and its Hessian at a fixed point is
  sym(−G ∂r/∂x) (eq. 6 for eq. 4, eq. 12 for eq. 10). Exact for symmetric W (eq4, e1, e2) and for any W
  (e3, eq14).
- ``hessian(x)`` (B, N, N): the exact Hessian, forward-mode derivative of the analytic gradient.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from hopbench.core.network import Network
from hopbench.errors import ConfigError, choice, number
from hopbench.registry import Registry

#: Energy.hessian holds about this many entries per pass (rows × points × N × N): 2^23 float64, 64 MiB
HESSIAN_CHUNK_ENTRIES = 2**23

__all__ = ["ENERGIES", "STATE_OF_ENERGY", "Energy", "build_energy", "check_state"]


class Energy:
    """A scalar function of the state; ``state`` is "y" (eq. 1 / 13 variables) or "u" (eq. 9).

    An energy is a config-group option (``energy``): built from its parameters alone (checked there), then
    bound to a network with :meth:`bind`, which returns a copy whose methods evaluate it on that network.
    """

    name: str = ""
    state: str = ""
    net: Network

    def bind(self, net: Network) -> Energy:
        """A copy of this energy on ``net`` (matrices such as S are built here, in the network's dtype)."""
        bound = copy.copy(self)
        bound.net = net
        bound._prepare()
        return bound

    def _prepare(self) -> None:
        """Network-dependent set-up of a bound copy."""

    def value(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def gradient(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def factor(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def canonical(self) -> str:
        """The name of the energy this one equals up to a positive factor (for theory look-ups)."""
        return self.name

    @property
    def s_is_identity(self) -> bool:
        return True

    @property
    def factor_exact(self) -> bool:
        """Whether ∇E = −G r holds exactly here (always for e3 and eq14; for symmetric W otherwise)."""
        return self.net.is_symmetric()

    def hessian(self, x: Tensor) -> Tensor:
        """∇²E(x) (B, N, N), symmetrised: the Jacobian of the analytic gradient (reverse mode), vmapped over points.

        A gradient that forms N × N matrices (Λ W, say) holds one per Hessian row being computed, so rows go
        through in chunks of k = ⌊HESSIAN_CHUNK_ENTRIES / N²⌋ and points in chunks that keep k·N² entries per
        pass: memory stays bounded (64 MiB a tangent) where a full jacfwd would need N³ per point.
        """
        n = x.shape[-1]
        if x.shape[0] == 0:  # chunked vmap cannot map over nothing
            return x.new_zeros(0, n, n)
        rows = max(1, min(n, HESSIAN_CHUNK_ENTRIES // n**2))
        points = max(1, HESSIAN_CHUNK_ENTRIES // (rows * n * n))
        H = torch.func.vmap(torch.func.jacrev(lambda z: self.gradient(z.unsqueeze(0)).squeeze(0), chunk_size=rows),
                            chunk_size=points)(x)
        return 0.5 * (H + H.transpose(-1, -2))

    # helpers shared by the energies ---------------------------------------------------------------
    def _pre(self, u: Tensor) -> Tensor:
        """h = W u + b for u-state energies."""
        return u @ self.net.W.T + self.net.b

    def _eye(self, x: Tensor) -> Tensor:
        return torch.eye(x.shape[-1], dtype=x.dtype, device=x.device).expand(x.shape[0], -1, -1)


class _WithS(Energy):
    """Energies with a symmetric positive definite weighting matrix S (eq. 10's E3, eq. 14)."""

    def __init__(self, *, S: str = "identity", S_seed: int = 0) -> None:
        self.S_kind = str(choice("energy.S", S, ["identity", "random_spd"]))
        self.S_seed = int(number("energy.S_seed", S_seed, at_least=0, integer=True))

    def _prepare(self) -> None:
        net = self.net
        n = net.n
        if self.S_kind == "identity":
            self.S = torch.eye(n, dtype=net.dtype, device=net.device)
        else:
            gen = torch.Generator().manual_seed(self.S_seed)
            A = torch.randn(n, n, generator=gen, dtype=torch.float64) / n**0.5
            self.S = (A @ A.T + 0.5 * torch.eye(n, dtype=torch.float64)).to(net.device, net.dtype)

    @property
    def s_is_identity(self) -> bool:
        return self.S_kind == "identity"

    @property
    def factor_exact(self) -> bool:
        return True


class KrotovHopfield(Energy):
    """Eq. 4: E(y) = (y − b)ᵀg(y) − L(y) − ½ g(y)ᵀ W g(y).

    ∇E = Λ(y)(y − b − W_s g), W_s = (W + Wᵀ)/2, so G = Λ (∇E = −Λ r for symmetric W) and the Hessian at a
    fixed point is Λ − ΛWΛ (eq. 6).
    """

    name, state = "eq4", "y"

    def value(self, y: Tensor) -> Tensor:
        net = self.net
        g = net.lagrangian.activation(y)
        return ((y - net.b) * g).sum(-1) - net.lagrangian.lagrangian(y) - 0.5 * ((g @ net.W.T) * g).sum(-1)

    def gradient(self, y: Tensor) -> Tensor:
        net = self.net
        g = net.lagrangian.activation(y)
        return net.lagrangian.hvp(y, y - net.b - 0.5 * (g @ net.W.T + g @ net.W))

    def factor(self, y: Tensor) -> Tensor:
        return self.net.lagrangian.hessian(y).dense()


class ResidualY(_WithS):
    """Eq. 14: E(y) = ½ hᵀ S h with h = W g(y) − y + b (the residual of eq. 1).

    ∇E = (WΛ − I)ᵀ S h, so G = (I − ΛWᵀ) S for any W.
    """

    name, state = "eq14", "y"

    def _residual(self, y: Tensor) -> Tensor:
        return self.net.lagrangian.activation(y) @ self.net.W.T - y + self.net.b

    def value(self, y: Tensor) -> Tensor:
        r = self._residual(y)
        return 0.5 * ((r @ self.S) * r).sum(-1)

    def gradient(self, y: Tensor) -> Tensor:
        Sr = self._residual(y) @ self.S
        return self.net.lagrangian.hvp(y, Sr @ self.net.W) - Sr

    def factor(self, y: Tensor) -> Tensor:
        lam = self.net.lagrangian.hessian(y)
        return self.S - lam.left(self.net.W.T @ self.S)


class E1(Energy):
    """Eq. 10: E1(u) = uᵀW g(Wu + b) − L(Wu + b) − ½ gᵀW g; equals eq. 4 at y = Wu + b (symmetric W).

    Exact gradient for any W: Wg − Wᵀg + WᵀΛ(Wᵀu − W_s g); G = WΛW for symmetric W.
    """

    name, state = "e1", "u"

    def value(self, u: Tensor) -> Tensor:
        net = self.net
        h = self._pre(u)
        g = net.lagrangian.activation(h)
        Wg = g @ net.W.T
        return (u * Wg).sum(-1) - net.lagrangian.lagrangian(h) - 0.5 * (g * Wg).sum(-1)

    def gradient(self, u: Tensor) -> Tensor:
        net = self.net
        h = self._pre(u)
        g = net.lagrangian.activation(h)
        Wg, Wtg = g @ net.W.T, g @ net.W
        return Wg - Wtg + net.lagrangian.hvp(h, u @ net.W - 0.5 * (Wg + Wtg)) @ net.W

    def factor(self, u: Tensor) -> Tensor:
        lam = self.net.lagrangian.hessian(self._pre(u))
        return torch.matmul(self.net.W, lam.left(self.net.W))


class E2(Energy):
    """Eq. 10: E2(u) = ½ uᵀW u − L(Wu + b). ∇E2 = W_s u − Wᵀg; G = W for symmetric W."""

    name, state = "e2", "u"

    def value(self, u: Tensor) -> Tensor:
        return 0.5 * ((u @ self.net.W.T) * u).sum(-1) - self.net.lagrangian.lagrangian(self._pre(u))

    def gradient(self, u: Tensor) -> Tensor:
        W = self.net.W
        return 0.5 * (u @ W.T + u @ W) - self.net.lagrangian.activation(self._pre(u)) @ W

    def factor(self, u: Tensor) -> Tensor:
        return self.net.W.expand(u.shape[0], -1, -1)


class E3(_WithS):
    """Eq. 10: E3(u; S) = ½ fᵀS f, f = u − g(Wu + b). ∇E3 = (I − WᵀΛ) S f; G = (I − WᵀΛ) S for any W."""

    name, state = "e3", "u"

    def _f(self, u: Tensor) -> tuple[Tensor, Tensor]:
        h = self._pre(u)
        return u - self.net.lagrangian.activation(h), h

    def value(self, u: Tensor) -> Tensor:
        f, _ = self._f(u)
        return 0.5 * ((f @ self.S) * f).sum(-1)

    def gradient(self, u: Tensor) -> Tensor:
        f, h = self._f(u)
        Sf = f @ self.S
        return Sf - self.net.lagrangian.hvp(h, Sf) @ self.net.W

    def factor(self, u: Tensor) -> Tensor:
        lam = self.net.lagrangian.hessian(self._pre(u))
        return self.S - torch.matmul(self.net.W.T, lam.left(self.S))


class Combined(Energy):
    """Eq. 10: E(u; α, β, γ, S) = α E1 + β E2 + γ E3(S). G = α WΛW + β W + γ (I − WᵀΛ) S (eq. 11's F)."""

    name, state = "combined", "u"

    def __init__(self, *, alpha: float = 0.0, beta: float = 1.0, gamma: float = 1.0, S: str = "identity",
                 S_seed: int = 0) -> None:
        coefficients = [number(f"energy.{k}", c) for k, c in (("alpha", alpha), ("beta", beta), ("gamma", gamma))]
        if all(c == 0 for c in coefficients):
            raise ConfigError("energy.alpha", alpha, "alpha, beta and gamma are all 0: the energy is constant")
        terms = zip(coefficients, (E1(), E2(), E3(S=S, S_seed=S_seed)), strict=True)
        self.terms: list[tuple[float, Energy]] = [(c, e) for c, e in terms if c != 0]
        self.S_kind = S

    def _prepare(self) -> None:
        self.terms = [(c, e.bind(self.net)) for c, e in self.terms]

    @property
    def canonical(self) -> str:
        if len(self.terms) == 1 and self.terms[0][0] > 0:
            return self.terms[0][1].name
        return self.name

    @property
    def s_is_identity(self) -> bool:
        return self.S_kind == "identity"

    @property
    def factor_exact(self) -> bool:
        return all(e.factor_exact for _, e in self.terms)

    def value(self, u: Tensor) -> Tensor:
        return sum(c * e.value(u) for c, e in self.terms)

    def gradient(self, u: Tensor) -> Tensor:
        return sum(c * e.gradient(u) for c, e in self.terms)

    def factor(self, u: Tensor) -> Tensor:
        return sum(c * e.factor(u) for c, e in self.terms)


ENERGIES: Registry[Energy] = Registry("energy")
for _cls in (KrotovHopfield, ResidualY, E1, E2, E3, Combined):
    ENERGIES.register(_cls.name)(_cls)

STATE_OF_ENERGY = {name: ENERGIES.get(name).state for name in ENERGIES}


def check_state(energy: Energy, state: str) -> None:
    """A ConfigError when ``energy`` is a function of another state than the model's ``state``."""
    if energy.state != state:
        allowed = [n for n, s in STATE_OF_ENERGY.items() if s == state]
        raise ConfigError("energy", energy.name, f"is a function of the {energy.state}-state; this model's "
                          f"state is {state}", allowed=allowed)


def build_energy(name: str, net: Network, params: dict | None = None, *, state: str) -> Energy:
    """Energy ``name`` (built with ``params``) for a model whose state is ``state`` ("y" or "u"), bound to ``net``."""
    energy = ENERGIES.build(name, params)
    check_state(energy, state)
    return energy.bind(net)
