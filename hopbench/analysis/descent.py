"""Does the configured energy really not increase? (docs/design.md §5.6; paper Prop. 5.1.)

(a) At sampled states: dE/dt = ∇E(x)·ẋ(x) with ∇E from autograd; a violation is
    dE/dt > tol·‖∇E‖‖ẋ‖. Also condition (11) at the same states: GᵀR + RᵀG ⪰ 0 (G from the energy,
    ∇E = −G r), the matrix inequality behind Prop. 5.1.
(b) Along trajectories: see ``solver.EnergyTrace.increases``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hopbench.core.models import Model

__all__ = ["condition11", "energy_rate"]


def energy_rate(model: Model, states: Tensor, *, tol: float = 1e-6) -> dict[str, Tensor]:
    """Per state (K,): ``rate`` dE/dt, ``relative`` dE/dt/(‖∇E‖‖ẋ‖) and ``violation`` (non-finite counts
    as a violation: it cannot be certified). Use a float64 model."""
    x = states.detach().clone().requires_grad_(True)
    grad = torch.autograd.grad(model.energy.value(x).sum(), x)[0]
    with torch.no_grad():
        xdot = model.vector_field(states)
        rate = (grad * xdot).sum(-1)
        scale = grad.norm(dim=-1) * xdot.norm(dim=-1)
        # ẋ = 0 or ∇E = 0 means dE/dt = 0 exactly: relative change 0, not 0/0
        relative = torch.where(scale > 0, rate / scale.clamp_min(torch.finfo(scale.dtype).tiny),
                               torch.zeros_like(rate))
        violation = ~torch.isfinite(relative) | (relative > tol)
    return {"rate": rate, "relative": relative, "violation": violation}


def condition11(model: Model, states: Tensor, *, tol: float = 1e-9) -> dict[str, Tensor]:
    """Per state (K,): min eigenvalue of sym(GᵀR) (½ of GᵀR + RᵀG) and whether it is ≥ −tol·scale.

    Meaningful where ``model.energy.factor_exact`` (∇E = −G r exactly); the check (a) above is not limited so.
    """
    with torch.no_grad():
        G = model.energy.factor(states)
        R = model.strategy.matrix(states, model.preactivation(states))
        M = G.transpose(-1, -2) @ R
        eigs = torch.linalg.eigvalsh(0.5 * (M + M.transpose(-1, -2)))
        scale = eigs.abs().amax(-1).clamp_min(1.0)
    return {"min_eig": eigs[..., 0], "holds": eigs[..., 0] >= -tol * scale}
