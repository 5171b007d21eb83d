"""How a trajectory ends: the rules both integration backends apply at their checks (every accepted step of a
row with ``backend=rows``, every window end with ``backend=torchdiffeq``).

At a check of a row at state x, time t, with speed v = ‖ẋ‖∞ and fixed-point residual ρ = ‖r(x)‖∞:

1. ``diverged`` when x or ẋ is non-finite or ‖x‖∞ > bound.
2. When v < tol: ``converged`` if ρ ≤ stall_factor·tol, else ``stalled`` (ẋ = R r ≈ 0 with r ≠ 0: R is singular
   along r). With R = I, ρ = v and no residual is computed.
3. Speed checkpoints: whenever v has halved since the row's last checkpoint, the check records (t, v, ρ).
   a. Early stall (R ≠ I, ``early_stall``). Along the approach to a limit point, fixed or stalled, x(t) − x_lim
      shrinks along the slowest mode, so ẋ and r(x) − r(x_lim) shrink in proportion: ρ is affine in v over the
      tail. The line through the last two checkpoints predicts ρ when v reaches tol, i.e. the status the row
      would get at rule 2. The row ends ``stalled`` now when R already shrinks r by more than a converged state
      may (v·stall_factor < ρ) and the prediction exceeds twice the stall threshold (2·stall_factor·tol), at two
      consecutive checkpoints (over a fourfold drop of the speed, so a passing slow-down does not count).
   b. Newton finish (``newton_finish``, v < newton_speed). The last halving time τ predicts the remaining
      integration: τ·log₂(v/tol) time units, at most t_max − t (a row still moving at t_max gets rule 4's
      attempt anyway), at the row's current cost per unit time (evaluations). When that exceeds the cost of an
      attempt, ``newton_cost``·(N + 25) evaluations (from the second halving on, past the first transient),
      :func:`hopbench.solve.newton.finish` is tried; an accepted fixed point ends the row
      ``converged`` (if ‖ẋ‖∞ < tol there in the working dtype), a refusal waits for the speed to drop eightfold
      before the next attempt.
4. A row about to end ``max_time`` (t_max or the step budget) with v < newton_speed gets a last Newton attempt,
   whatever it costs and whatever the last refusal: where accepted (the flow heads for x*, by the contraction
   test), x* is the end state (``converged``, t = t_max) instead of a state in mid-flight. One attempt per such
   row: at N = 512 on a CPU about as much as a few thousand of its evaluations.

Rules 3a and 3b cost one residual evaluation per checkpoint (R ≠ I only) and nothing for rows that never
reach them; with R = I the early-stall rule is off (nothing can stall) and the trajectories are those of plain
integration up to the Newton finish.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from hopbench.core.models import Model
from hopbench.solve.newton import finish
from hopbench.solve.trajectories import CONVERGED, DIVERGED, STALLED, SolverConfig
from hopbench.threads import job_budget

__all__ = ["ACTIVE", "NEWTON_OVERHEAD", "Check", "Endings", "Watch"]

ACTIVE = -1  # code of a row that goes on
#: a Newton finish attempt costs ``solver.newton_cost``·(N + NEWTON_OVERHEAD) vector-field evaluations of the
#: batched integrator: one to three LU and one Cholesky factorisations of N × N matrices and ~10 chord
#: iterations on a few rows, whose per-call costs the batch does not share
NEWTON_OVERHEAD = 25
SPEED_DROP = 2.0  # a checkpoint each time the speed halves
RETRY_DROP = 8.0  # after a refused Newton attempt, the speed must drop this much before the next


@dataclass
class Watch:
    """What the rules remember per active row (all (B,)): the last speed checkpoint and the Newton schedule."""

    level: Tensor  # next checkpoint once v ≤ level
    t: Tensor  # time of the last checkpoint (NaN: none yet)
    speed: Tensor  # v at the last checkpoint
    residual: Tensor  # ρ at the last checkpoint (R ≠ I)
    halving: Tensor  # time between the last two checkpoints (NaN: fewer than two)
    halving_before: Tensor  # ... and between the two before
    suspect: Tensor  # bool: the last checkpoint already predicted a stall
    retry: Tensor  # Newton may be tried once v ≤ retry

    @classmethod
    def start(cls, n: int, device: torch.device, newton_speed: float) -> Watch:
        def full(value: float, dt: torch.dtype = torch.float64) -> Tensor:
            return torch.full((n,), value, dtype=dt, device=device)

        return cls(full(math.inf), full(math.nan), full(math.nan), full(math.nan), full(math.nan), full(math.nan),
                   torch.zeros(n, dtype=torch.bool, device=device), full(newton_speed))

    def take(self, keep: Tensor) -> Watch:
        """The rows ``keep`` (bool or index)."""
        return Watch(*(getattr(self, f.name)[keep] for f in fields(self)))


@dataclass
class Check:
    """The outcome of a check on the active rows (B,)."""

    code: Tensor  # ACTIVE, or the status the row ends with
    x: Tensor  # (B, N) the state (the Newton fixed point where the finish was accepted)
    speed: Tensor  # ‖ẋ‖∞ at x
    evaluations: Tensor  # int64: evaluations the check spent on the row (residuals, Newton)
    newton: Tensor  # bool: ended by the Newton finish


class Endings:
    """The rules of this module for one integration call of ``model`` under ``config``."""

    def __init__(self, model: Model, config: SolverConfig) -> None:
        self.model, self.cfg = model, config
        self.plain = model.strategy.is_identity  # ẋ = r: ρ = v, nothing stalls
        self.stalls = not self.plain and config.early_stall
        self.checkpoints = self.stalls or config.newton_finish
        self._model64: Model | None = None

    @property
    def model64(self) -> Model:
        if self._model64 is None:
            self._model64 = self.model if self.model.net.W.dtype == torch.float64 else self.model.to(
                dtype=torch.float64)
        return self._model64

    def residual(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.model.residual(x).abs().amax(-1).double()

    def check(self, x: Tensor, f: Tensor, t: Tensor, cost_rate: Tensor, watch: Watch, last: Tensor,
              leaving: Tensor) -> Check | None:
        """Apply the rules to rows at states x (B, N) with ẋ = f, times t (B,) float64 and integration cost
        ``cost_rate`` (B,) (evaluations per unit time); ``last`` (B,) marks rows that leave now at t_max (or out of
        steps) unless a rule ends them, ``leaving`` (B,) rows that the backend ends anyway (a collapsed step).
        Updates ``watch`` in place. None when no row leaves and nothing is due (the common case; one host sync)."""
        cfg = self.cfg
        speed = f.abs().amax(-1)
        bad = ~torch.isfinite(speed) | ~torch.isfinite(x).all(-1) | (x.abs().amax(-1) > cfg.bound)
        small = ~bad & (speed < cfg.tol)
        halved = ~bad & ~small & (speed.double() <= watch.level) if self.checkpoints else torch.zeros_like(bad)
        final = ~bad & ~small & last & (speed < cfg.newton_speed) if cfg.newton_finish else torch.zeros_like(bad)
        if not bool((bad | small | halved | last | leaving).any()):
            return None
        code = torch.full_like(speed, ACTIVE, dtype=torch.long)
        evaluations = torch.zeros_like(code)
        code[bad] = DIVERGED
        if self.plain:
            code[small] = CONVERGED
        elif bool(small.any()):
            rho = self.residual(x[small])
            evaluations[small] += 1
            code[small] = torch.where(rho <= cfg.stall_factor * cfg.tol, CONVERGED, STALLED)
        out = Check(code, x, speed, evaluations, torch.zeros_like(bad))
        rows = halved.nonzero().squeeze(-1)
        if rows.numel():
            self._checkpoint(rows, out, t[rows], watch)
        if cfg.newton_finish:
            # rule 3b at a fresh checkpoint (after a refusal: once the speed dropped eightfold), rule 4 at t_max
            due = halved & (speed.double() <= watch.retry) & (code == ACTIVE) & (speed < cfg.newton_speed)
            rows = due.nonzero().squeeze(-1)
            due[rows] = self._worth(out.speed[rows].double(), cost_rate[rows], watch.take(rows), out.x.shape[-1])
            rows = (due | (final & (code == ACTIVE))).nonzero().squeeze(-1)
            if rows.numel():
                self._newton(rows, out, watch)
        return out

    def _checkpoint(self, rows: Tensor, out: Check, t: Tensor, watch: Watch) -> None:
        """Rule 3a at rows whose speed halved, and the checkpoint's record for rule 3b."""
        cfg = self.cfg
        v = out.speed[rows].double()
        if self.stalls:
            rho = self.residual(out.x[rows])
            out.evaluations[rows] += 1
            v0, rho0 = watch.speed[rows], watch.residual[rows]
            slope = (rho0 - rho) / (v0 - v)  # residual drop per unit of speed drop (NaN at the first checkpoint)
            predicted = rho - slope * (v - cfg.tol)
            stall_now = (v * cfg.stall_factor < rho) & (predicted > 2 * cfg.stall_factor * cfg.tol)
            out.code[rows[stall_now & watch.suspect[rows]]] = STALLED
            watch.suspect[rows], watch.residual[rows] = stall_now, rho
        watch.halving_before[rows] = watch.halving[rows]
        watch.halving[rows] = t - watch.t[rows]
        watch.t[rows], watch.speed[rows], watch.level[rows] = t, v, v / SPEED_DROP

    def _worth(self, v: Tensor, cost_rate: Tensor, watch: Watch, n: int) -> Tensor:
        """Rule 3b's test at a fresh checkpoint (``watch.t`` is now): the tail predicted from the last halving
        time, cut at t_max, costs more than an attempt (two halvings seen, past the first transient; NaN compares
        False)."""
        tail = torch.minimum(watch.halving * torch.log2(v / self.cfg.tol), self.cfg.t_max - watch.t)
        remaining = tail * cost_rate
        steady = torch.isfinite(watch.halving_before)
        return steady & (remaining >= self.cfg.newton_cost * (n + NEWTON_OVERHEAD))

    def _newton(self, rows: Tensor, out: Check, watch: Watch) -> None:
        m64 = self.model64
        x = out.x[rows]
        with torch.no_grad(), job_budget(1):  # a few rows at a time: latency-bound, a second thread only spins
            x64 = x.double()
            done = finish(m64, x64, m64.vector_field(x64))
            x_star = done.x.to(x.dtype)
            f_star = self.model.vector_field(x_star)
        speed = f_star.abs().amax(-1)
        ok = done.accepted & (speed < self.cfg.tol)
        out.evaluations[rows] += done.evaluations + 2
        out.x = out.x.clone()
        out.x[rows[ok]], out.speed[rows[ok]] = x_star[ok], speed[ok]
        out.code[rows[ok]], out.newton[rows[ok]] = CONVERGED, True
        watch.retry[rows[~ok]] = watch.speed[rows[~ok]] / RETRY_DROP
