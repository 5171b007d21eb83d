"""Newton's method on the fixed-point residual r(x) = 0: polishing of approximate fixed points, and the Newton
finish of a trajectory (the slow tail of the flow replaced by Newton steps where that keeps its end state)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hopbench.chunks import matrix_chunks
from hopbench.core.models import Model
from hopbench.threads import lu_factor, solver_budget

__all__ = ["Finished", "Polished", "finish", "polish"]


@dataclass
class Polished:
    """Fixed points refined by Newton's method."""

    x: Tensor  # (B, N)
    residual: Tensor  # (B,) ‖r(x)‖∞ after polishing
    converged: Tensor  # (B,) residual <= tol·max(1, ‖x‖∞)
    shift: Tensor  # (B,) ‖x_polished − x_start‖∞


#: a fixed point: ‖r‖∞ ≤ FIXED_TOL·max(1, ‖x‖∞) (polish's default, the Newton finish's test)
FIXED_TOL = 1e-10


def polish(model: Model, x: Tensor, *, iterations: int = 30, tol: float = FIXED_TOL) -> Polished:
    """Batched damped Newton on the fixed-point residual r(x) = 0 (use a float64 model).

    Each step solves (∂r/∂x) δ = −r (pseudo-inverse where singular) and halves δ per row until ‖r‖
    decreases. The residual, not ẋ = R r, is solved, so a singular R cannot fake a fixed point. Rows are
    independent; they are taken in ``matrix_chunks`` so the (B, N, N) Jacobians stay bounded.
    """
    with solver_budget(x.shape[-1]):
        parts = [_polish_chunk(model, chunk, iterations, tol) for chunk in matrix_chunks(x)]
    return Polished(*(torch.cat(fields) for fields in zip(*((p.x, p.residual, p.converged, p.shift) for p in parts),
                                                          strict=True)))


def _polish_chunk(model: Model, x: Tensor, iterations: int, tol: float) -> Polished:
    """Newton on the rows still in play: a row leaves once converged, or once its line search finds no decrease
    (a repeat from the same x would take the same step), so the Jacobians are formed for those rows only."""
    x0 = x.detach().clone()
    x = x0.clone()
    with torch.no_grad():
        r = model.residual(x)
        rn = r.abs().amax(-1)
        stuck = ~torch.isfinite(rn) | ~torch.isfinite(x).all(-1)  # nothing to polish: never a fixed point
        for _ in range(iterations):
            done = rn <= tol * x.abs().amax(-1).clamp_min(1.0)
            rows = (~done & ~stuck).nonzero().squeeze(-1)
            if not rows.numel():
                break
            xa, ra, rna = x[rows], r[rows], rn[rows]
            J = model.residual_jacobian(xa)
            LU, pivots, info = lu_factor(J)
            delta = torch.linalg.lu_solve(LU, pivots, -ra.unsqueeze(-1)).squeeze(-1)
            singular = ((info != 0) | ~torch.isfinite(delta).all(-1)).nonzero().squeeze(-1)
            if singular.numel():
                Js = J[singular]
                finite = torch.isfinite(Js).all(-1).all(-1)  # an overflowing Jacobian: no step to take
                delta[singular] = torch.where(finite.unsqueeze(-1), (torch.linalg.pinv(
                    torch.where(finite[:, None, None], Js, 0.0)) @ -ra[singular].unsqueeze(-1)).squeeze(-1), 0.0)
            step = torch.ones_like(rna)
            accepted = torch.zeros_like(rna, dtype=torch.bool)
            for _ in range(30):
                trial = xa + step.unsqueeze(-1) * delta
                r_try = model.residual(trial)
                rn_try = r_try.abs().amax(-1)
                ok = ~accepted & (rn_try < rna)
                xa[ok], ra[ok], rna[ok] = trial[ok], r_try[ok], rn_try[ok]
                accepted |= ok
                if bool(accepted.all()):
                    break
                step = torch.where(accepted, step, step / 2)
            x[rows], r[rows], rn[rows] = xa, ra, rna
            stuck[rows] = ~accepted
    converged = torch.isfinite(x).all(-1) & (rn <= tol * x.abs().amax(-1).clamp_min(1.0))
    return Polished(x, rn, converged, (x - x0).abs().amax(-1))


#: the Newton finish accepts x* only if the linearisation at x* explains the current velocity to within this
#: fraction of the contraction rate (see :func:`finish`)
REMAINDER_SHARE = 0.5
#: ... and only if J(x*) contracts at least at this rate relative to its scale max(1, ‖J(x*)‖∞)
MIN_CONTRACTION = 1e-6
CHORD_ITERATIONS = 40
CHORD_RATE = 0.5  # each chord step must be at most this share of the previous one, else the Jacobian is renewed
FACTORISATIONS = 3  # LU factorisations per row and attempt


@dataclass
class Finished:
    """The outcome of a Newton finish attempt on a batch of trajectory states."""

    accepted: Tensor  # (B,) bool: x* is where the flow from x goes
    x: Tensor  # (B, N) the fixed point x* where accepted, else the state given
    evaluations: Tensor  # (B,) int64: residual and Jacobian evaluations spent on the row
    found: Tensor  # (B,) bool: the chord iteration reached a fixed point x*
    rate: Tensor  # (B,) the contraction rate μ that J(x*) was required to have (NaN where none was found)


def finish(model: Model, x: Tensor, velocity: Tensor) -> Finished:
    """Replace the slow tail of trajectories at states x (B, N), with ẋ = ``velocity`` there, by Newton's method
    on r(x) = 0, where that keeps the end state the flow would reach (use a float64 model).

    Newton's method with the Jacobian kept while it contracts (the chord iteration x ← x − (∂r/∂x(x₀))⁻¹ r(x),
    renewed at most twice; no damping, so it only converges from nearby) gives a fixed point x*. Write e = x − x*,
    J* = ∂ẋ/∂x at x* (``model.jacobian``, exact at fixed points) and q = ẋ(x) − J* e, the part of the current
    velocity that the linearisation at x* does not explain. x* is accepted when J* is stable with a margin μ,

        max Re λ(J*) ≤ −μ,   μ = max(‖q‖₂ / (s ‖e‖₂), MIN_CONTRACTION·max(1, ‖J*‖∞)),   s = REMAINDER_SHARE,

    i.e. the contraction of the linear flow beats the nonlinear remainder seen over the distance from x to x*
    by a factor 1/s. Why this keeps the end state: with z = y − x* along the flow, ½ d‖z‖²/dt = zᵀJ*z + zᵀq(y)
    ≤ −μ‖z‖² + ‖z‖‖q(y)‖ (in the norm in which J* contracts at rate μ; the Euclidean one when J* is normal),
    and while ‖q(y)‖ ≤ s μ‖z‖ the distance to x* shrinks at rate ≥ (1 − s)μ: the trajectory cannot leave the
    ball of radius ‖e‖ and converges to x*. The remainder is O(‖z‖²), so measuring it at the state farthest out
    (x itself) stands for the whole ball; the share s = ½ leaves room for directions where it is larger.
    A saddle or a marginal point fails the spectrum test; a stable point that the flow is not heading for (a
    Newton jump across a basin boundary) fails the remainder test, since there ẋ(x) and J* e disagree.

    The spectrum test is one Cholesky factorisation of −S − μI where ``model.symmetric_jacobian`` gives a
    symmetric S with the spectrum of J* (R = I, W = Wᵀ, Λ ⪰ 0), else the eigenvalues of J*.
    """
    parts = [_finish_chunk(model, xc, vc) for xc, vc in zip(matrix_chunks(x), matrix_chunks(velocity), strict=True)]
    return Finished(*(torch.cat(fields) for fields in zip(
        *((p.accepted, p.x, p.evaluations, p.found, p.rate) for p in parts), strict=True)))


def _chord(model: Model, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(x*, found (B,), evaluations (B,)): Newton on r = 0 from x (B, N) with the Jacobian kept while each step is
    at most CHORD_RATE of the previous one (the chord iteration), refactorised at the current iterate when not,
    at most FACTORISATIONS times per row. Evaluations count residuals and Jacobians."""
    def factor(points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return lu_factor(model.residual_jacobian(points))

    LU, pivots, info = factor(x)
    going = info == 0
    r = model.residual(x)
    evaluations = torch.full_like(going, 2, dtype=torch.long)
    factorised = torch.ones_like(evaluations)
    last = torch.full(going.shape, torch.inf, dtype=x.dtype, device=x.device)

    def tolerance(points: Tensor) -> Tensor:
        return FIXED_TOL * points.abs().amax(-1).clamp_min(1.0)

    for _ in range(CHORD_ITERATIONS):
        going &= r.abs().amax(-1) > tolerance(x)
        if not bool(going.any()):
            break
        delta = torch.linalg.lu_solve(LU, pivots, -r.unsqueeze(-1)).squeeze(-1)
        size = delta.abs().amax(-1)
        slow = going & ~(size <= CHORD_RATE * last)  # also non-finite steps
        fresh = slow & (factorised < FACTORISATIONS)
        if bool(fresh.any()):
            rows = fresh.nonzero().squeeze(-1)
            LU[rows], pivots[rows], info_rows = factor(x[rows])
            delta[rows] = torch.linalg.lu_solve(LU[rows], pivots[rows], -r[rows].unsqueeze(-1)).squeeze(-1)
            size[rows] = delta[rows].abs().amax(-1)
            factorised[rows] += 1
            evaluations[rows] += 1
            slow[rows] = (info_rows != 0) | ~torch.isfinite(size[rows])
        going &= ~slow
        x = torch.where(going.unsqueeze(-1), x + delta, x)
        last = size
        r = model.residual(x)
        evaluations += going
    return x, r.abs().amax(-1) <= tolerance(x), evaluations


def _finish_chunk(model: Model, x: Tensor, velocity: Tensor) -> Finished:
    with torch.no_grad():
        xs, found, evaluations = _chord(model, x)
        accepted = found.clone()
        rate = torch.full(found.shape, torch.nan, dtype=x.dtype, device=x.device)
        rows = found.nonzero().squeeze(-1)
        if rows.numel():
            J = model.jacobian(xs[rows])
            evaluations[rows] += 1
            e = x[rows] - xs[rows]
            q = velocity[rows] - (J @ e.unsqueeze(-1)).squeeze(-1)
            en = e.norm(dim=-1)
            ratio = torch.where(en > 0, q.norm(dim=-1) / en.clamp_min(torch.finfo(e.dtype).tiny), 0.0)
            mu = torch.maximum(ratio / REMAINDER_SHARE, MIN_CONTRACTION * J.abs().sum(-1).amax(-1).clamp_min(1.0))
            rate[rows] = mu
            accepted[rows] = _contracts(model, xs[rows], J, mu)
    return Finished(accepted, torch.where(accepted.unsqueeze(-1), xs, x), evaluations, found, rate)


def _contracts(model: Model, x: Tensor, J: Tensor, mu: Tensor) -> Tensor:
    """(B,) whether every eigenvalue of J (B, N, N) at fixed points x has real part ≤ −mu (B,)."""
    S = model.symmetric_jacobian(x)
    if S is None:
        return torch.linalg.eigvals(J).real.amax(-1) <= -mu
    M = -S
    M.diagonal(dim1=-2, dim2=-1).sub_(mu.unsqueeze(-1))
    return torch.linalg.cholesky_ex(M).info == 0
