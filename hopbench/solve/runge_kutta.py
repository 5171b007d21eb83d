"""Batched adaptive integration with a step size per trajectory (``solver.backend=rows``): embedded explicit
Runge–Kutta pairs (dopri5, bosh3) and a linearly implicit Rosenbrock-W method for stiff systems (ros34pw2).

torchdiffeq advances a whole batch with one step size and can only be stopped between calls, so
``hopbench.solve.integrate`` runs it in windows and removes converged rows at window ends. Here every row
(B, N) has its own step size and error test, exactly as if it were integrated alone (the per-cue
``solve_ivp`` script, batched), as in torchode; what hopbench adds is the steady-state ending: a row leaves the
batch (and stops costing evaluations) at the first accepted step where :mod:`hopbench.solve.endings` ends it
(converged, stalled, diverged; ẋ there is the first-same-as-last stage, so the check costs no evaluation), where
its step size collapses (diverged), or at t_max.

Same tableaus, error norm (RMS of err / (atol + rtol·max(|y₀|, |y₁|))), initial step (Hairer–Nørsett–Wanner
II.4) and step-size rule (safety 0.9, growth ≤ 10, shrink ≥ 0.2, exponent 1/order) as torchdiffeq. One
host–device sync per step: whether any row ends or reaches a checkpoint.

**Stiff systems.** Explicit methods keep h·|λ| inside their stability region for every eigenvalue λ of the
Jacobian, so a fast stable mode (λ ≈ −900 for the modified dynamics with R = I − ΛWᵀ and a strong W) forces
thousands of tiny steps while the state itself moves slowly. ``method=ros34pw2`` (Rang & Angermann 2005:
4 stages, order 3 with an embedded order-2 solution, L-stable, stiffly accurate) solves per stage
(I − γhA) kᵢ = h f(y + Σⱼ αᵢⱼkⱼ) + hA Σⱼ γᵢⱼkⱼ with one LU factorisation of I − γhA per step. As a W-method
it keeps its order for any matrix A, so A = ``model.jacobian(y)`` = R(y)·∂r/∂y serves (it lacks the term
(∂R/∂y)·r, which vanishes at fixed points); A only has to capture the stiff modes for stability.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from hopbench.core.models import Model
from hopbench.solve.endings import ACTIVE, Endings, Watch
from hopbench.solve.trajectories import DIVERGED, MAX_TIME, EnergyTrace, SolverConfig, Trajectories
from hopbench.threads import lu_factor

__all__ = ["ROSENBROCK", "STIFF_STEPS", "TABLEAUS", "Rosenbrock", "Tableau", "integrate_rows"]

log = logging.getLogger(__name__)
#: an explicit run with more steps than this suggests a stiff system (a warning names solver=ros34pw2)
STIFF_STEPS = 5000


@dataclass(frozen=True)
class Tableau:
    """An explicit first-same-as-last embedded pair: stage rows ``a`` (the last row is the solution), error
    weights ``e`` (solution minus embedded), and the order used in the step-size rule."""

    a: tuple[tuple[float, ...], ...]
    e: tuple[float, ...]
    order: int

    @property
    def evaluations(self) -> int:
        """Vector-field evaluations per step."""
        return len(self.a)


TABLEAUS = {
    "dopri5": Tableau(
        a=((1 / 5,),
           (3 / 40, 9 / 40),
           (44 / 45, -56 / 15, 32 / 9),
           (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
           (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
           (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)),
        e=(35 / 384 - 1951 / 21600, 0.0, 500 / 1113 - 22642 / 50085, 125 / 192 - 451 / 720,
           -2187 / 6784 + 12231 / 42400, 11 / 84 - 649 / 6300, -1 / 60),
        order=5),
    "bosh3": Tableau(
        a=((1 / 2,), (0.0, 3 / 4), (2 / 9, 1 / 3, 4 / 9)),
        e=(2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8),
        order=3),
}
SAFETY, GROW, SHRINK = 0.9, 10.0, 0.2


@dataclass(frozen=True)
class Rosenbrock:
    """A Rosenbrock-W method in the form (I − γhA) kᵢ = h f(y + Σⱼ αᵢⱼkⱼ) + hA Σⱼ γᵢⱼkⱼ, y₁ = y + Σ bᵢkᵢ,
    with embedded weights ``b_hat`` and the order used in the step-size rule."""

    gamma: float
    alpha: tuple[tuple[float, ...], ...]  # strictly lower rows 2..s
    gammas: tuple[tuple[float, ...], ...]  # strictly lower rows 2..s
    b: tuple[float, ...]
    b_hat: tuple[float, ...]
    order: int

    @property
    def evaluations(self) -> int:
        """Vector-field evaluations per step (the stages after the first, and ẋ at the new state) plus one
        for the Jacobian."""
        return len(self.b) + 1


#: ROS34PW2 (Rang & Angermann, BIT 45, 2005), coefficients as in PETSc's TSROSWRA34PW2
ROSENBROCK = {
    "ros34pw2": Rosenbrock(
        gamma=4.3586652150845900e-01,
        alpha=((8.7173304301691801e-01,),
               (8.4457060015369423e-01, -1.1299064236484185e-01),
               (0.0, 0.0, 1.0)),
        gammas=((-8.7173304301691801e-01,),
                (-9.0338057013044082e-01, 5.4180672388095326e-02),
                (2.4212380706095346e-01, -1.2232505839045147e+00, 5.4526025533510214e-01)),
        b=(2.4212380706095346e-01, -1.2232505839045147e+00, 1.5452602553351020e+00, 4.3586652150845900e-01),
        b_hat=(3.7810903145819369e-01, -9.6042292212423178e-02, 0.5, 2.1793326075422950e-01),
        order=3),
}


def _rms(v: Tensor) -> Tensor:
    return v.pow(2).mean(-1).sqrt()


def _combine(y: Tensor, h: Tensor, weights: tuple[float, ...], k: list[Tensor]) -> Tensor:
    """y + h Σ_j w_j k_j for rows (B, N) with per-row steps h (B, 1)."""
    total = torch.zeros_like(y)
    for w, kj in zip(weights, k, strict=False):
        if w:
            total.add_(kj, alpha=w)
    return y.addcmul(total, h)


def _initial_step(model: Model, y: Tensor, f: Tensor, rtol: float, atol: float, order: int) -> Tensor:
    """Hairer–Nørsett–Wanner's starting step, per row (B,) (one extra evaluation)."""
    scale = atol + y.abs() * rtol
    d0, d1 = _rms(y / scale), _rms(f / scale)
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1)
    f1 = model.vector_field(y + h0.unsqueeze(-1) * f)
    d2 = _rms((f1 - f) / scale) / h0
    top = torch.maximum(d1, d2)
    h1 = torch.where(top <= 1e-15, torch.clamp(h0 * 1e-3, min=1e-6), (0.01 / top) ** (1.0 / (order + 1)))
    return torch.minimum(100 * h0, h1).to(torch.float64)


def _explicit_step(tab: Tableau, model: Model, y: Tensor, f: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One step of every row: (y₁, ẋ(y₁), error estimate), each (B, N)."""
    k = [f]
    for row in tab.a:
        y1 = _combine(y, h, row, k)  # after the last row: the solution (its stage is ẋ there)
        k.append(model.vector_field(y1))
    return y1, k[-1], _combine(torch.zeros_like(y), h, tab.e, k)


def _rosenbrock_step(tab: Rosenbrock, model: Model, y: Tensor, f: Tensor,
                     h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One step of every row: (y₁, ẋ(y₁), error estimate); rows whose I − γhA is singular get a NaN error."""
    A = model.jacobian(y)
    M = -tab.gamma * h.unsqueeze(-1) * A
    M.diagonal(dim1=-2, dim2=-1).add_(1.0)
    LU, pivots, info = lu_factor(M)

    def solve(rhs: Tensor) -> Tensor:
        return torch.linalg.lu_solve(LU, pivots, rhs.unsqueeze(-1)).squeeze(-1)

    k = [solve(h * f)]
    for alpha, gammas in zip(tab.alpha, tab.gammas, strict=True):
        stage = model.vector_field(_combine(y, torch.ones_like(h), alpha, k))
        coupling = _combine(torch.zeros_like(y), torch.ones_like(h), gammas, k)
        k.append(solve(h * (stage + (A @ coupling.unsqueeze(-1)).squeeze(-1))))
    ones = torch.ones_like(h)
    y1 = _combine(y, ones, tab.b, k)
    err = _combine(torch.zeros_like(y), ones, tuple(b - bh for b, bh in zip(tab.b, tab.b_hat, strict=True)), k)
    err = torch.where((info == 0).unsqueeze(-1), err, torch.full_like(err, math.nan))
    return y1, model.vector_field(y1), err


def integrate_rows(model: Model, x0: Tensor, cfg: SolverConfig, record_energy: bool = False) -> Trajectories:
    """Integrate ẋ = model.vector_field(x) from x0 (B, N), each row with its own step size, until
    :class:`hopbench.solve.endings.Endings` ends it, its step size collapses or it reaches ``cfg.t_max``. With
    ``record_energy`` the energy is stored at every accepted step of every row."""
    tab: Tableau | Rosenbrock = ROSENBROCK[cfg.method] if cfg.method in ROSENBROCK else TABLEAUS[cfg.method]
    step = _rosenbrock_step if isinstance(tab, Rosenbrock) else _explicit_step
    B, dev = x0.shape[0], x0.device
    x, speed = x0.detach().clone(), torch.empty(B, dtype=x0.dtype, device=dev)
    status = torch.full((B,), MAX_TIME, dtype=torch.long, device=dev)
    t_end = torch.zeros(B, dtype=torch.float64, device=dev)
    nfe = torch.zeros(B, dtype=torch.long, device=dev)
    newton = torch.zeros(B, dtype=torch.bool, device=dev)
    traces: list[tuple[Tensor, Tensor, Tensor]] = []
    notes: list[str] = []
    endings = Endings(model, cfg)
    watch = Watch.start(B, dev, cfg.newton_speed)
    with torch.no_grad():
        idx, y = torch.arange(B, device=dev), x.clone()
        f = model.vector_field(y)
        t = torch.zeros(B, dtype=torch.float64, device=dev)
        spent = torch.ones(B, dtype=torch.long, device=dev)  # evaluations per active row
        if record_energy:
            traces.append((idx, t.to(y.dtype), model.energy.value(y)))
        dt: Tensor | None = None  # chosen once the rows that end at t = 0 have left
        steps = 0
        while idx.numel():
            cost_rate = tab.evaluations / dt if dt is not None else torch.full_like(t, math.inf)
            out_of_time = (t >= cfg.t_max * (1 - 1e-12)) | (steps >= cfg.max_steps)  # t_max: up to rounding
            collapsed = ~out_of_time & (dt <= 1e-12 * t.abs().clamp_min(1.0)) if dt is not None else \
                torch.zeros_like(out_of_time)
            check = endings.check(y, f, t, cost_rate, watch, out_of_time, collapsed)  # the one host sync per step
            if check is not None:  # some row ends, or a checkpoint was due
                spent += check.evaluations
                y = check.x
                ended = check.code != ACTIVE
                if record_energy and bool(check.newton.any()):
                    traces.append((idx[check.newton], t[check.newton].to(y.dtype),
                                   model.energy.value(y[check.newton])))
                collapsed &= ~ended
                leave = ended | collapsed | out_of_time
            if check is not None and bool(leave.any()):
                code = torch.where(ended, check.code, torch.where(collapsed, DIVERGED, MAX_TIME))
                gone = idx[leave]
                status[gone], x[gone], speed[gone], t_end[gone] = code[leave], y[leave], check.speed[leave], t[leave]
                nfe[gone], newton[gone] = spent[leave], check.newton[leave]
                if bool(collapsed.any()):
                    notes.append(f"step size collapsed on {int(collapsed.sum())} trajectories (marked diverged)")
                keep = ~leave
                idx, y, f, t, spent = idx[keep], y[keep], f[keep], t[keep], spent[keep]
                watch = watch.take(keep)
                dt = None if dt is None else dt[keep]
                if not idx.numel():
                    break
            if dt is None:
                dt = _initial_step(model, y, f, cfg.rtol, cfg.atol, tab.order)
                spent += 1
            dt = torch.minimum(dt, cfg.t_max - t)
            h = dt.to(y.dtype).unsqueeze(-1)
            y1, f1, err = step(tab, model, y, f, h)
            spent += tab.evaluations
            steps += 1
            ratio = _rms(err / (cfg.atol + cfg.rtol * torch.maximum(y.abs(), y1.abs()))).double()
            ratio = torch.where(torch.isfinite(ratio), ratio, torch.full_like(ratio, torch.inf))
            accept = ratio <= 1
            y = torch.where(accept.unsqueeze(-1), y1, y)
            f = torch.where(accept.unsqueeze(-1), f1, f)
            t = torch.where(accept, t + dt, t)
            if record_energy and bool(accept.any()):
                traces.append((idx[accept], t[accept].to(y.dtype), model.energy.value(y[accept])))
            floor = torch.where(accept, 1.0, SHRINK)
            factor = torch.clamp(SAFETY * ratio.clamp_min(1e-300) ** (-1.0 / tab.order), max=GROW)
            dt = torch.where(ratio == 0, dt * GROW, dt * torch.maximum(factor, floor.to(ratio.dtype)))
    if steps > STIFF_STEPS and not isinstance(tab, Rosenbrock):
        log.warning("%s took %d steps for %d trajectories (mean %.0f evaluations each): the system looks stiff; "
                    "solver=ros34pw2 integrates stiff systems in far fewer steps", cfg.method, steps, B,
                    float(nfe.double().mean()))
    trace = EnergyTrace.join(traces, B) if record_energy else None
    return Trajectories(x, status, t_end, nfe, speed, trace, notes, newton)
