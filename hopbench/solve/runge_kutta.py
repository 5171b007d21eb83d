"""Batched embedded Runge–Kutta with a step size per trajectory (``solver.backend=rows``).

torchdiffeq advances a whole batch with one step size and can only be stopped between calls, so
``hopbench.solve.integrate`` runs it in windows and removes converged rows at window ends. This integrator
does what no library does for a batch: every row (B, N) has its own step size and error test, exactly as if
it were integrated alone (the per-cue ``solve_ivp`` script, batched), and a row leaves the batch at the first
accepted step where it has converged (‖ẋ‖∞ < tol, read off the first-same-as-last stage, so at no extra
evaluation), diverged (non-finite, ‖x‖∞ > bound, or a step size that collapses) or reached t_max.

Same tableaus, error norm (RMS of err / (atol + rtol·max(|y₀|, |y₁|))), initial step (Hairer–Nørsett–Wanner
II.4) and step-size rule (safety 0.9, growth ≤ 10, shrink ≥ 0.2, exponent 1/order) as torchdiffeq. One
host–device sync per step: whether any row leaves.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hopbench.core.models import Model
from hopbench.solve.trajectories import CONVERGED, DIVERGED, MAX_TIME, EnergyTrace, SolverConfig, Trajectories

__all__ = ["TABLEAUS", "Tableau", "integrate_rows"]


@dataclass(frozen=True)
class Tableau:
    """An explicit first-same-as-last embedded pair: stage rows ``a`` (the last row is the solution), error
    weights ``e`` (solution minus embedded), and the order used in the step-size rule."""

    a: tuple[tuple[float, ...], ...]
    e: tuple[float, ...]
    order: int


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


def integrate_rows(model: Model, x0: Tensor, cfg: SolverConfig, record_energy: bool = False) -> Trajectories:
    """Integrate ẋ = model.vector_field(x) from x0 (B, N), each row with its own step size, until it
    converges, diverges or reaches ``cfg.t_max``. With ``record_energy`` the energy is stored at every
    accepted step of every row."""
    tab = TABLEAUS[cfg.method]
    B, dev = x0.shape[0], x0.device
    x, speed = x0.detach().clone(), torch.empty(B, dtype=x0.dtype, device=dev)
    status = torch.full((B,), MAX_TIME, dtype=torch.long, device=dev)
    t_end = torch.zeros(B, dtype=torch.float64, device=dev)
    nfe = torch.zeros(B, dtype=torch.long, device=dev)
    traces: list[tuple[Tensor, Tensor, Tensor]] = []
    notes: list[str] = []
    with torch.no_grad():
        idx, y = torch.arange(B, device=dev), x.clone()
        f = model.vector_field(y)
        t = torch.zeros(B, dtype=torch.float64, device=dev)
        if record_energy:
            traces.append((idx, t.to(y.dtype), model.energy.value(y)))
        dt: Tensor | None = None  # chosen once the rows that end at t = 0 have left
        evaluations, steps = 1, 0
        while idx.numel():
            sp = f.abs().amax(-1)
            bad = ~torch.isfinite(sp) | ~torch.isfinite(y).all(-1) | (y.abs().amax(-1) > cfg.bound)
            out_of_time = t >= cfg.t_max * (1 - 1e-12)  # the last step lands on t_max up to rounding
            collapsed = ~bad & ~out_of_time & (dt <= 1e-12 * t.abs().clamp_min(1.0)) if dt is not None else \
                torch.zeros_like(bad)
            conv = ~bad & (sp < cfg.tol)
            leave = bad | conv | collapsed | out_of_time | (steps >= cfg.max_steps)
            if bool(leave.any()):  # the one host sync per step
                code = torch.where(bad | (collapsed & ~conv), DIVERGED, torch.where(conv, CONVERGED, MAX_TIME))
                gone = idx[leave]
                status[gone], x[gone], speed[gone], t_end[gone] = code[leave], y[leave], sp[leave], t[leave]
                nfe[gone] = evaluations
                if bool((collapsed & ~conv & ~bad).any()):
                    notes.append(f"step size collapsed on {int((collapsed & ~conv & ~bad).sum())} trajectories "
                                 "(marked diverged)")
                keep = ~leave
                idx, y, f, t = idx[keep], y[keep], f[keep], t[keep]
                dt = None if dt is None else dt[keep]
                if not idx.numel():
                    break
            if dt is None:
                dt = _initial_step(model, y, f, cfg.rtol, cfg.atol, tab.order)
                evaluations += 1
            dt = torch.minimum(dt, cfg.t_max - t)
            h = dt.to(y.dtype).unsqueeze(-1)
            k = [f]
            for row in tab.a:
                y1 = _combine(y, h, row, k)  # after the last row: the solution (its stage is ẋ there)
                k.append(model.vector_field(y1))
            evaluations += len(tab.a)
            steps += 1
            err = _combine(torch.zeros_like(y), h, tab.e, k)
            ratio = _rms(err / (cfg.atol + cfg.rtol * torch.maximum(y.abs(), y1.abs()))).double()
            ratio = torch.where(torch.isfinite(ratio), ratio, torch.full_like(ratio, torch.inf))
            accept = ratio <= 1
            y = torch.where(accept.unsqueeze(-1), y1, y)
            f = torch.where(accept.unsqueeze(-1), k[-1], f)
            t = torch.where(accept, t + dt, t)
            if record_energy and bool(accept.any()):
                traces.append((idx[accept], t[accept].to(y.dtype), model.energy.value(y[accept])))
            floor = torch.where(accept, 1.0, SHRINK)
            factor = torch.clamp(SAFETY * ratio.clamp_min(1e-300) ** (-1.0 / tab.order), max=GROW)
            dt = torch.where(ratio == 0, dt * GROW, dt * torch.maximum(factor, floor.to(ratio.dtype)))
    trace = None
    if record_energy:
        i, tt, ee = (torch.cat(parts) for parts in zip(*traces, strict=True))
        trace = EnergyTrace(i, tt, ee, B)
    return Trajectories(x, status, t_end, nfe, speed, trace, notes)
