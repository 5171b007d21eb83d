"""Batched integration to steady states, with per-trajectory statuses.

``integrate`` has two backends (``solver.backend``). ``rows`` (:mod:`hopbench.solve.runge_kutta`, the default for
dopri5 and bosh3) gives every trajectory its own step size and lets it leave the batch at the first accepted
step where it converged. ``torchdiffeq`` (every method, including the fixed-step rk4 and euler) runs
torchdiffeq over time windows of growing length; after each window, trajectories that
:mod:`hopbench.solve.endings` ends (converged, stalled, diverged, or finished by Newton) leave the active batch,
and the error norm is the largest per-trajectory RMS, so each trajectory gets the requested accuracy whatever
the batch holds. With either, whatever is still active at t_max ends as ``max_time``: every trajectory ends with
exactly one status, and nothing is dropped.

Small problems (N below ``hopbench.threads.SMALL_PROBLEM``) run single-threaded
(:func:`hopbench.threads.solver_budget`): the solver's many tiny tensor operations gain nothing from a second
thread; larger ones use the job's budget.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchdiffeq import odeint

from hopbench.core.models import Model
from hopbench.solve.endings import ACTIVE, Endings, Watch
from hopbench.solve.runge_kutta import integrate_rows
from hopbench.solve.trajectories import MAX_TIME, EnergyTrace, SolverConfig, Trajectories
from hopbench.threads import solver_budget

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
    """Integrate ẋ = model.vector_field(x) from x0 (B, N) until each trajectory ends (see
    :mod:`hopbench.solve.trajectories` for the statuses) or reaches t_max. With ``record_energy`` the model's
    energy is stored at every accepted step (and at the Newton finish's fixed point).
    With ``config.row_wise`` (the default for dopri5, bosh3 and ros34pw2) the batch goes to
    :func:`hopbench.solve.runge_kutta.integrate_rows`: a step size per trajectory, rows leaving at once."""
    cfg = config or SolverConfig()
    with solver_budget(x0.shape[-1]):
        if cfg.row_wise:
            return integrate_rows(model, x0, cfg, record_energy)
        return _integrate_windows(model, x0, cfg, record_energy)


def _integrate_windows(model: Model, x0: Tensor, cfg: SolverConfig, record_energy: bool) -> Trajectories:
    """The torchdiffeq backend: windows of growing length, the rules of hopbench.solve.endings at window ends."""
    B = x0.shape[0]
    dev = x0.device
    x = x0.detach().clone()
    status = torch.full((B,), MAX_TIME, dtype=torch.long, device=dev)
    t_end = torch.zeros(B, dtype=torch.float64, device=dev)
    nfe = torch.ones(B, dtype=torch.long, device=dev)
    newton = torch.zeros(B, dtype=torch.bool, device=dev)
    speed = torch.empty(B, dtype=x0.dtype, device=dev)
    traces: list[tuple[Tensor, Tensor, Tensor]] = []
    notes: list[str] = []
    endings = Endings(model, cfg)

    def settle(idx: Tensor, xa: Tensor, t: float, cost_rate: float, watch: Watch,
               last: bool = False) -> tuple[Tensor, Watch]:
        """Check the rows ``idx`` at time t (``last``: no window follows); returns the rows still active and their
        watch."""
        with torch.no_grad():
            v = model.vector_field(xa)
        times = torch.full((idx.numel(),), t, dtype=torch.float64, device=dev)
        final = torch.full_like(times, last or t >= cfg.t_max, dtype=torch.bool)
        check = endings.check(xa, v, times, torch.full_like(times, cost_rate), watch, final, torch.zeros_like(final))
        x[idx], t_end[idx], speed[idx] = xa, t, v.abs().amax(-1)
        if check is None:
            return idx, watch
        status[idx], x[idx], speed[idx] = torch.where(check.code == ACTIVE, MAX_TIME, check.code), check.x, check.speed
        nfe[idx] += check.evaluations
        newton[idx] = check.newton
        if record_energy and bool(check.newton.any()):
            with torch.no_grad():
                traces.append((idx[check.newton], times[check.newton].to(xa.dtype),
                               model.energy.value(check.x[check.newton])))
        going = check.code == ACTIVE
        return idx[going], watch.take(going)

    if record_energy:
        with torch.no_grad():
            traces.append((torch.arange(B, device=dev), torch.zeros(B, dtype=x.dtype, device=dev),
                           model.energy.value(x)))
    active, watch = settle(torch.arange(B, device=dev), x.clone(), 0.0, math.inf,
                           Watch.start(B, dev, cfg.newton_speed))

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
            settle(active, x[active].clone(), t, 0.0, watch, last=True)
            break
        nfe[active] += spent + 1
        if record_energy:
            for t_rec, e_rec in func.records:
                traces.append((active, t_rec, e_rec))
            with torch.no_grad():
                traces.append((active, torch.full_like(xa[:, 0], t1), model.energy.value(xa)))
        active, watch = settle(active, xa, t1, spent / (t1 - t), watch)
        t, window = t1, window * cfg.window_growth
    trace = EnergyTrace.join(traces, B) if record_energy else None
    return Trajectories(x, status, t_end, nfe, speed, trace, notes, newton)
