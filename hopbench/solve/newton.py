"""Newton polishing of approximate fixed points: the residual r(x) = 0 solved to rounding, in bounded memory."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hopbench.chunks import matrix_chunks
from hopbench.core.models import Model

__all__ = ["Polished", "polish"]


@dataclass
class Polished:
    """Fixed points refined by Newton's method."""

    x: Tensor  # (B, N)
    residual: Tensor  # (B,) ‖r(x)‖∞ after polishing
    converged: Tensor  # (B,) residual <= tol·max(1, ‖x‖∞)
    shift: Tensor  # (B,) ‖x_polished − x_start‖∞


def polish(model: Model, x: Tensor, *, iterations: int = 30, tol: float = 1e-10) -> Polished:
    """Batched damped Newton on the fixed-point residual r(x) = 0 (use a float64 model).

    Each step solves (∂r/∂x) δ = −r (pseudo-inverse where singular) and halves δ per row until ‖r‖
    decreases. The residual, not ẋ = R r, is solved, so a singular R cannot fake a fixed point. Rows are
    independent; they are taken in ``matrix_chunks`` so the (B, N, N) Jacobians stay bounded.
    """
    parts = [_polish_chunk(model, chunk, iterations, tol) for chunk in matrix_chunks(x)]
    return Polished(*(torch.cat(fields) for fields in zip(*((p.x, p.residual, p.converged, p.shift) for p in parts),
                                                          strict=True)))


def _polish_chunk(model: Model, x: Tensor, iterations: int, tol: float) -> Polished:
    x0 = x.detach().clone()
    x = x0.clone()
    with torch.no_grad():
        r = model.residual(x)
        rn = r.abs().amax(-1)
        for _ in range(iterations):
            done = rn <= tol * x.abs().amax(-1).clamp_min(1.0)
            if bool(done.all()):
                break
            J = model.residual_jacobian(x)
            delta, info = torch.linalg.solve_ex(J, -r.unsqueeze(-1))
            delta = delta.squeeze(-1)
            singular = (info != 0) | ~torch.isfinite(delta).all(-1)
            if bool(singular.any()):
                delta[singular] = (torch.linalg.pinv(J[singular]) @ -r[singular].unsqueeze(-1)).squeeze(-1)
            step = torch.ones_like(rn)
            accepted = done.clone()
            x_new, r_new, rn_new = x.clone(), r.clone(), rn.clone()
            for _ in range(30):
                trial = x + step.unsqueeze(-1) * delta
                r_try = model.residual(trial)
                rn_try = r_try.abs().amax(-1)
                ok = ~accepted & (rn_try < rn)
                x_new[ok], r_new[ok], rn_new[ok] = trial[ok], r_try[ok], rn_try[ok]
                accepted |= ok
                if bool(accepted.all()):
                    break
                step = torch.where(accepted, step, step / 2)
            if bool((x_new == x).all()):
                break
            x, r, rn = x_new, r_new, rn_new
    converged = rn <= tol * x.abs().amax(-1).clamp_min(1.0)
    return Polished(x, rn, converged, (x - x0).abs().amax(-1))
