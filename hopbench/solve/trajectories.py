"""What integration is asked and what it returns: solver settings, per-trajectory statuses, energy traces.

Every trajectory ends with exactly one status (:data:`STATUSES`, indices fixed):

- ``converged`` (0): ‖ẋ‖∞ < tol at a state whose fixed-point residual r = ``model.residual`` is small too,
  ‖r‖∞ ≤ stall_factor·tol; or the Newton finish reached a stable fixed point that the flow heads for, by its
  contraction test (:func:`hopbench.solve.newton.finish`; ``Trajectories.newton`` marks those rows).
- ``max_time`` (1): still moving at t_max (or the step budget ran out).
- ``diverged`` (2): non-finite, ‖x‖∞ above the bound, or a collapsed step size.
- ``stalled`` (3): the flow stops where r ≠ 0. In ẋ = R(x) r(x) a singular R halts the state away from every
  fixed point: ‖ẋ‖∞ < tol while ‖r‖∞ > stall_factor·tol, i.e. R shrinks r by more than the factor a converged
  state may show. A row that is visibly heading for such a stop ends ``stalled`` early (see
  :mod:`hopbench.solve.endings`). With R = I (``original``, strategy ``identity``) ẋ = r and no row can stall.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from hopbench.errors import ConfigError, flag, number

__all__ = ["ADAPTIVE_METHODS", "BACKENDS", "CONVERGED", "DIVERGED", "FIXED_METHODS", "MAX_TIME", "METHODS",
           "ROW_METHODS", "STALLED", "STATUSES", "STIFF_METHODS", "EnergyTrace", "SolverConfig", "Trajectories"]

STATUSES = ("converged", "max_time", "diverged", "stalled")
CONVERGED, MAX_TIME, DIVERGED, STALLED = range(4)
ADAPTIVE_METHODS = ("dopri5", "bosh3", "dopri8", "adaptive_heun")  # torchdiffeq's adaptive methods
FIXED_METHODS = ("rk4", "euler", "midpoint")
STIFF_METHODS = ("ros34pw2",)  # linearly implicit (Rosenbrock-W), hopbench.solve.runge_kutta only
METHODS = ADAPTIVE_METHODS + FIXED_METHODS + STIFF_METHODS
BACKENDS = ("auto", "rows", "torchdiffeq")
ROW_METHODS = ("dopri5", "bosh3", *STIFF_METHODS)  # hopbench.solve.runge_kutta


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
    # "rows": a step size per trajectory (hopbench.solve.runge_kutta; dopri5, bosh3, ros34pw2); "torchdiffeq":
    # windows of one batch-wide torchdiffeq call; "auto": rows where available, else torchdiffeq
    backend: str = "auto"
    stall_factor: float = 100.0  # stalled when ‖ẋ‖∞ < tol but ‖r‖∞ > stall_factor·tol (R singular along r)
    early_stall: bool = True  # end rows that are visibly heading for a stall (hopbench.solve.endings)
    newton_finish: bool = True  # finish slow tails with Newton where the end state stays the flow's
    newton_speed: float = 0.1  # ... only once ‖ẋ‖∞ is below this
    # ... where the tail left is predicted to cost more evaluations than an attempt, newton_cost·(N + 25) (on an
    # idle CPU an attempt costs ~3000 row evaluations of the batched integrator at N = 512, ~800 at N = 128;
    # 0: wherever the rules allow)
    newton_cost: float = 6.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError("solver.method", self.method, "unknown method", allowed=METHODS)
        for key in ("rtol", "atol", "step_size", "t_max", "tol", "bound", "first_window", "newton_speed"):
            number(f"solver.{key}", getattr(self, key), above=0)
        number("solver.max_steps", self.max_steps, at_least=1, integer=True)
        number("solver.newton_cost", self.newton_cost, at_least=0)
        flag("solver.early_stall", self.early_stall)
        flag("solver.newton_finish", self.newton_finish)
        if self.tol < self.atol:
            raise ConfigError("solver.tol", self.tol, f"must be ≥ solver.atol={self.atol}: the integrator's "
                              "own error keeps ‖ẋ‖ above a tolerance finer than its accuracy")
        if self.backend not in BACKENDS:
            raise ConfigError("solver.backend", self.backend, "unknown backend", allowed=BACKENDS)
        if self.backend == "rows" and self.method not in ROW_METHODS:
            raise ConfigError("solver.method", self.method, "not available with solver.backend=rows",
                              allowed=ROW_METHODS)
        if self.backend == "torchdiffeq" and self.method in STIFF_METHODS:
            raise ConfigError("solver.backend", self.backend, f"{self.method} runs on the rows backend only",
                              allowed=("auto", "rows"))
        number("solver.window_growth", self.window_growth, at_least=1)
        number("solver.stall_factor", self.stall_factor, at_least=1)

    @property
    def row_wise(self) -> bool:
        """Whether ``integrate`` uses hopbench.solve.runge_kutta (one step size per trajectory)."""
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

    @classmethod
    def join(cls, parts: list[tuple[Tensor, Tensor, Tensor]], n: int) -> EnergyTrace:
        """One trace from the (index, t, energy) pieces an integrator recorded, in order, for n trajectories."""
        index, t, energy = (torch.cat(field) for field in zip(*parts, strict=True))
        return cls(index, t, energy, n)

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
    newton: Tensor | None = None  # (B,) bool: the end state is the Newton finish's fixed point (t: when it took over)

    def __post_init__(self) -> None:
        if self.newton is None:
            self.newton = torch.zeros_like(self.status, dtype=torch.bool)

    def counts(self) -> dict[str, int]:
        """Status counts; they sum to B."""
        return {name: int((self.status == i).sum()) for i, name in enumerate(STATUSES)}

    def fraction(self, name: str) -> float:
        return float((self.status == STATUSES.index(name)).double().mean())

    def status_names(self) -> list[str]:
        return [STATUSES[i] for i in self.status.tolist()]


