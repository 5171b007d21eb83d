"""Batched integration to steady states, with per-trajectory statuses.

``integrate`` has two backends (``solver.backend``). ``rows`` (:mod:`hopbench.solve.runge_kutta`, the default for
dopri5 and bosh3) gives every trajectory its own step size and lets it leave the batch at the first accepted
step where it converged. ``torchdiffeq`` (every method, including the fixed-step rk4 and euler) runs
torchdiffeq over time windows of growing length; after each window, trajectories that converged
(‖ẋ‖∞ < tol) or diverged (non-finite, or ‖x‖∞ > bound) leave the active batch, and the error norm is the
largest per-trajectory RMS, so each trajectory gets the requested accuracy whatever the batch holds. With
either, whatever is still active at t_max ends as ``max_time``: every trajectory ends with exactly one
status, and nothing is dropped.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchdiffeq import odeint

from hopbench.core.models import Model
from hopbench.solve.runge_kutta import integrate_rows
from hopbench.solve.trajectories import CONVERGED, DIVERGED, MAX_TIME, EnergyTrace, SolverConfig, Trajectories

__all__ = ["integrate"]


class _Field(torch.nn.Module):
    """The vector field as torchdiffeq sees it: counts evaluations and, when ``guarded``, freezes runaway rows.

    Guarded, rows that are non-finite or beyond the divergence bound get ẋ = 0 so that one exploding
    trajectory cannot break the step-size control of the others; they are marked ``diverged`` after the
    window. The guard costs a few element-wise passes per evaluation, so ``integrate`` runs a window
    unguarded first and repeats it guarded only when it fails (step-size underflow or non-finite states).
    """

    def __init__(self, model: Model, bound: float) -> None:
        super().__init__()
        self.model, self.bound = model, bound
        self.guarded = False
        self.nfe = 0
        self.last_dt: Tensor | None = None
        self.records: list[tuple[Tensor, Tensor]] = []

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        self.nfe += 1
        dx = self.model.vector_field(x)
        if not self.guarded:
            return dx
        ok = (x.abs().amax(-1, keepdim=True) <= self.bound) & torch.isfinite(dx).all(-1, keepdim=True)
        return torch.where(ok, dx, torch.zeros((), dtype=dx.dtype, device=dx.device))

    def remember_dt(self, t0: Tensor, y0: Tensor, dt: Tensor) -> None:
        self.last_dt = dt

    def record(self, t0: Tensor, y0: Tensor, dt: Tensor) -> None:
        self.last_dt = dt
        with torch.no_grad():
            self.records.append((t0.expand(y0.shape[0]).to(y0.dtype), self.model.energy.value(y0)))


def _rowwise_rms_max(t: Tensor) -> Tensor:
    """Error norm: the largest per-trajectory RMS (the batch does not dilute any trajectory's error)."""
    return t.pow(2).mean(-1).sqrt().amax() if t.ndim > 1 else t.pow(2).mean().sqrt()


def integrate(model: Model, x0: Tensor, config: SolverConfig | None = None, *,
              record_energy: bool = False) -> Trajectories:
    """Integrate ẋ = model.vector_field(x) from x0 (B, N) until each trajectory converges, diverges or
    reaches t_max. With ``record_energy`` the model's energy is stored at every accepted step.
    With ``config.row_wise`` (the default for dopri5 and bosh3) the batch goes to
    :func:`hopbench.solve.runge_kutta.integrate_rows` instead: a step size per trajectory, rows leaving at once."""
    cfg = config or SolverConfig()
    if cfg.row_wise:
        return integrate_rows(model, x0, cfg, record_energy)
    B = x0.shape[0]
    dev = x0.device
    x = x0.detach().clone()
    status = torch.full((B,), MAX_TIME, dtype=torch.long, device=dev)
    t_end = torch.zeros(B, dtype=torch.float64, device=dev)
    nfe = torch.ones(B, dtype=torch.long, device=dev)
    traces: list[tuple[Tensor, Tensor, Tensor]] = []
    notes: list[str] = []

    def settle(idx: Tensor, xa: Tensor, t: float) -> tuple[Tensor, Tensor]:
        """Classify the rows ``idx`` at time t; returns (still active idx, their speeds)."""
        with torch.no_grad():
            v = model.vector_field(xa)
        sp = v.abs().amax(-1)
        bad = ~torch.isfinite(xa).all(-1) | ~torch.isfinite(sp) | (xa.abs().amax(-1) > cfg.bound)
        conv = ~bad & (sp < cfg.tol)
        status[idx[bad]] = DIVERGED
        status[idx[conv]] = CONVERGED
        x[idx], t_end[idx], speed[idx] = xa, t, sp
        return idx[~(bad | conv)], sp

    speed = torch.empty(B, dtype=x0.dtype, device=dev)
    if record_energy:
        with torch.no_grad():
            traces.append((torch.arange(B, device=dev), torch.zeros(B, dtype=x.dtype, device=dev),
                           model.energy.value(x)))
    active, _ = settle(torch.arange(B, device=dev), x.clone(), 0.0)

    func = _Field(model, cfg.bound)
    if cfg.adaptive:
        func.callback_accept_step = func.record if record_energy else func.remember_dt
    elif record_energy:
        func.callback_step = func.record
    t, window = 0.0, cfg.first_window
    while active.numel() and t < cfg.t_max:
        t1 = min(t + window, cfg.t_max)
        options: dict = ({"norm": _rowwise_rms_max, "max_num_steps": cfg.max_steps} if cfg.adaptive
                         else {"step_size": cfg.step_size})
        if cfg.adaptive and func.last_dt is not None:
            options["first_step"] = func.last_dt
        span = torch.tensor([t, t1], dtype=torch.float64, device=dev)
        spent = 0
        for func.guarded in (False, True):
            func.nfe, func.records = 0, []
            try:
                with torch.no_grad():
                    xa = odeint(func, x[active], span, method=cfg.method, rtol=cfg.rtol, atol=cfg.atol,
                                options=options)[-1]
            except AssertionError as err:  # torchdiffeq: step-size underflow or max_num_steps exceeded
                xa, failure = None, f"solver stopped in window [{t:g}, {t1:g}]: {err}"
            spent += func.nfe
            if xa is not None and bool(torch.isfinite(xa).all()):
                break
        if xa is None:
            notes.append(failure)
            nfe[active] += spent
            settle(active, x[active].clone(), t)
            break
        nfe[active] += spent + 1
        if record_energy:
            for t_rec, e_rec in func.records:
                traces.append((active, t_rec, e_rec))
            with torch.no_grad():
                traces.append((active, torch.full_like(xa[:, 0], t1), model.energy.value(xa)))
        active, _ = settle(active, xa, t1)
        t, window = t1, window * cfg.window_growth
    trace = None
    if record_energy:
        idx, tt, ee = (torch.cat(parts) for parts in zip(*traces, strict=True))
        trace = EnergyTrace(idx, tt, ee, B)
    return Trajectories(x, status, t_end, nfe, speed, trace, notes)
