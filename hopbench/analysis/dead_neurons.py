"""Dead neurons: the flat-energy probe (Prop. 1, docs/design.md §5.7) and steady-state recovery (Prop. 4.3).

At a y-state point with dead neurons, V (B, N, K) spans the directions along which g is constant. Prop. 1:
energy (4) is constant on {y + V c, c ≥ 0}. The modified energies E2, E3 (eq. 10) and eq. 14 are not,
because they depend on W u + b (or y) through terms other than g.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hopbench.core.models import Energy
from hopbench.core.network import Network

__all__ = ["flat_energy_probe", "minimise_energy", "recover_steady_state"]


def flat_energy_probe(net: Network, y: Tensor, energies: list[Energy], *, dead_tol: float = 1e-6,
                      n_draws: int = 8, scale: float = 1.0, generator: torch.Generator | None = None
                      ) -> dict[str, Tensor]:
    """Largest |E(moved) − E(start)| (B,) over ``n_draws`` moves y → y + V c, c ~ U(0, scale)^K.

    y-state energies are evaluated at y + V c; u-state energies at the u with W u + b = y (least squares),
    moved by δu solving W δu = V c, i.e. the same move of the pre-activation. Also returns ``n_dead`` (B,).
    """
    V = net.lagrangian.dead_directions(y, dead_tol)  # (B, N, K)
    B, N, K = V.shape
    c = scale * torch.rand(B, n_draws, K, generator=generator, dtype=torch.float64).to(y.device, y.dtype)
    dy = torch.einsum("bnk,bdk->bdn", V, c)  # (B, D, N)
    out: dict[str, Tensor] = {"n_dead": (V.abs().sum(-2) > 0).sum(-1)}
    W_pinv = torch.linalg.pinv(net.W)
    for energy in energies:
        if energy.state == "y":
            start, moved = y, y.unsqueeze(1) + dy
        else:
            start = (y - net.b) @ W_pinv.T
            moved = start.unsqueeze(1) + dy @ W_pinv.T
        e0 = energy.value(start)
        e1 = energy.value(moved.reshape(B * n_draws, N)).reshape(B, n_draws)
        out[energy.name] = (e1 - e0.unsqueeze(1)).abs().amax(-1)
    return out


def minimise_energy(energy: Energy, y0: Tensor, *, iterations: int = 200) -> Tensor:
    """A local minimiser of a y-state energy from y0 (B, N), by L-BFGS on Σ_b E(y_b) (rows independent).

    Uses the energy's analytic gradient.
    """
    y = y0.detach().clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS([y], max_iter=iterations, tolerance_grad=1e-12, tolerance_change=1e-15,
                                  history_size=50, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimiser.zero_grad()
        with torch.no_grad():
            y.grad = energy.gradient(y)
            return energy.value(y).sum()

    optimiser.step(closure)
    return y.detach()


def recover_steady_state(net: Network, y_tilde: Tensor, *, dead_tol: float = 1e-6) -> Tensor:
    """Prop. 4.3: a steady state of eq. 1 from an energy minimiser ỹ (B, N).

    y = ỹ + P_d (W g(ỹ) + b − ỹ), with P_d the projector onto the null space of Λ(ỹ). The paper writes
    y = ỹ + P_d(W g(ỹ) + b), which is the same only when P_d ỹ = 0: the dead part of a steady state is
    y_d = P_d(W g + b) (eq. 8), whatever ỹ_d the minimiser left there.
    """
    P_d = net.lagrangian.hessian(y_tilde).null_projector(dead_tol)
    target = net.lagrangian.activation(y_tilde) @ net.W.T + net.b - y_tilde
    return y_tilde + (P_d @ target.unsqueeze(-1)).squeeze(-1)
