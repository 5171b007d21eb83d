"""Batched integration to steady states, with per-trajectory statuses, and Newton polishing.

``integrate`` has two backends (``solver.backend``). ``rows`` (:mod:`hopbench.rowwise`, the default for
dopri5 and bosh3) gives every trajectory its own step size and lets it leave the batch at the first accepted
step where it converged. ``torchdiffeq`` (every method, including the fixed-step rk4 and euler) runs
torchdiffeq over time windows of growing length; after each window, trajectories that converged
(‖ẋ‖∞ < tol) or diverged (non-finite, or ‖x‖∞ > bound) leave the active batch, and the error norm is the
largest per-trajectory RMS, so each trajectory gets the requested accuracy whatever the batch holds. With
either, whatever is still active at t_max ends as ``max_time``: every trajectory ends with exactly one
status, and nothing is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torchdiffeq import odeint

from hopbench.errors import ConfigError
from hopbench.models import Model

__all__ = ["STATUSES", "Polished", "SolverConfig", "Trajectories", "integrate", "polish"]

STATUSES = ("converged", "max_time", "diverged")
#: batched N × N work (Newton polish here, the stability analysis) is done in chunks of at most this many
#: matrix entries: 2^26 float64 entries, 512 MiB a matrix
MATRIX_CHUNK_ENTRIES = 2**26
CONVERGED, MAX_TIME, DIVERGED = range(3)


def matrix_chunks(x: Tensor) -> tuple[Tensor, ...]:
    """Points x (B, N) split so that each chunk's (b, N, N) matrices hold at most MATRIX_CHUNK_ENTRIES."""
    return x.split(max(1, MATRIX_CHUNK_ENTRIES // x.shape[-1] ** 2))
ADAPTIVE_METHODS = ("dopri5", "bosh3", "dopri8", "adaptive_heun")
FIXED_METHODS = ("rk4", "euler", "midpoint")
BACKENDS = ("auto", "rows", "torchdiffeq")
ROW_METHODS = ("dopri5", "bosh3")  # hopbench.rowwise.TABLEAUS


@dataclass(frozen=True)
class SolverConfig:
    """Integration settings (config group ``solver``)."""

    method: str = "dopri5"
    rtol: float = 1e-5
    atol: float = 1e-6
    step_size: float = 0.1  # fixed-step methods only
    t_max: float = 200.0
    tol: float = 1e-4  # converged when ‖ẋ‖∞ < tol
    bound: float = 1e6  # diverged when ‖x‖∞ > bound
    first_window: float = 1.0
    window_growth: float = 1.5
    max_steps: int = 100_000  # per window (torchdiffeq), in all (rows)
    # "rows": a step size per trajectory (hopbench.rowwise; dopri5, bosh3); "torchdiffeq": windows of one
    # batch-wide torchdiffeq call; "auto": rows where available, else torchdiffeq
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.method not in ADAPTIVE_METHODS + FIXED_METHODS:
            raise ConfigError("solver.method", self.method, "unknown method",
                              allowed=ADAPTIVE_METHODS + FIXED_METHODS)
        for key in ("rtol", "atol", "step_size", "t_max", "tol", "bound", "first_window"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"solver.{key}", getattr(self, key), "must be > 0")
        if self.tol < self.atol:
            raise ConfigError("solver.tol", self.tol, f"must be ≥ solver.atol={self.atol}: the integrator's "
                              "own error keeps ‖ẋ‖ above a tolerance finer than its accuracy")
        if self.backend not in BACKENDS:
            raise ConfigError("solver.backend", self.backend, "unknown backend", allowed=BACKENDS)
        if self.backend == "rows" and self.method not in ROW_METHODS:
            raise ConfigError("solver.method", self.method, "not available with solver.backend=rows",
                              allowed=ROW_METHODS)
        if self.window_growth < 1:
            raise ConfigError("solver.window_growth", self.window_growth, "must be ≥ 1")

    @property
    def row_wise(self) -> bool:
        """Whether ``integrate`` uses hopbench.rowwise (one step size per trajectory)."""
        return self.backend == "rows" or (self.backend == "auto" and self.method in ROW_METHODS)

    @property
    def adaptive(self) -> bool:
        return self.method in ADAPTIVE_METHODS


@dataclass
class EnergyTrace:
    """Energies at every accepted solver step, long form: trajectory index (K,), time (K,), energy (K,)."""

    index: Tensor
    t: Tensor
    energy: Tensor
    n: int  # number of trajectories

    def increases(self, rtol: float) -> Tensor:
        """Per trajectory (B,) whether E rose between consecutive steps by more than rtol·max(1, |E|)."""
        order = torch.sort(self.index, stable=True).indices
        idx, e = self.index[order], self.energy[order]
        same = idx[1:] == idx[:-1]
        rise = (e[1:] - e[:-1]) > rtol * e[:-1].abs().clamp_min(1.0)
        rise = rise | ~torch.isfinite(e[1:])
        out = torch.zeros(self.n, dtype=torch.bool, device=idx.device)
        return out.index_put_((idx[1:][same & rise],), torch.tensor(True, device=idx.device))


@dataclass
class Trajectories:
    """Final states of a batch of trajectories and how each one ended."""

    x: Tensor  # (B, N) final states
    status: Tensor  # (B,) int64 index into STATUSES
    t: Tensor  # (B,) time at which each trajectory stopped
    nfe: Tensor  # (B,) vector-field evaluations while the trajectory was active
    speed: Tensor  # (B,) ‖ẋ‖∞ at the final state
    trace: EnergyTrace | None = None
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Status counts; they sum to B."""
        return {name: int((self.status == i).sum()) for i, name in enumerate(STATUSES)}

    def fraction(self, name: str) -> float:
        return float((self.status == STATUSES.index(name)).double().mean())

    def status_names(self) -> list[str]:
        return [STATUSES[i] for i in self.status.tolist()]


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
    :func:`hopbench.rowwise.integrate_rows` instead: a step size per trajectory, rows leaving at once."""
    cfg = config or SolverConfig()
    if cfg.row_wise:
        from hopbench.rowwise import integrate_rows  # imports this module's result types

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
