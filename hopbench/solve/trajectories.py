"""What integration is asked and what it returns: solver settings, per-trajectory statuses, energy traces.

Every trajectory ends with exactly one status (:data:`STATUSES`): ``converged`` (‖ẋ‖∞ < tol), ``max_time``
(still moving at t_max) or ``diverged`` (non-finite, ‖x‖∞ above the bound, or a collapsed step size).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from hopbench.errors import ConfigError, number

__all__ = ["ADAPTIVE_METHODS", "BACKENDS", "CONVERGED", "DIVERGED", "FIXED_METHODS", "MAX_TIME", "ROW_METHODS",
           "STATUSES", "EnergyTrace", "SolverConfig", "Trajectories"]

STATUSES = ("converged", "max_time", "diverged")
CONVERGED, MAX_TIME, DIVERGED = range(3)
ADAPTIVE_METHODS = ("dopri5", "bosh3", "dopri8", "adaptive_heun")
FIXED_METHODS = ("rk4", "euler", "midpoint")
BACKENDS = ("auto", "rows", "torchdiffeq")
ROW_METHODS = ("dopri5", "bosh3")  # hopbench.solve.runge_kutta.TABLEAUS


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
    # "rows": a step size per trajectory (hopbench.solve.runge_kutta; dopri5, bosh3); "torchdiffeq": windows of one
    # batch-wide torchdiffeq call; "auto": rows where available, else torchdiffeq
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.method not in ADAPTIVE_METHODS + FIXED_METHODS:
            raise ConfigError("solver.method", self.method, "unknown method",
                              allowed=ADAPTIVE_METHODS + FIXED_METHODS)
        for key in ("rtol", "atol", "step_size", "t_max", "tol", "bound", "first_window"):
            number(f"solver.{key}", getattr(self, key), above=0)
        number("solver.max_steps", self.max_steps, at_least=1, integer=True)
        if self.tol < self.atol:
            raise ConfigError("solver.tol", self.tol, f"must be ≥ solver.atol={self.atol}: the integrator's "
                              "own error keeps ‖ẋ‖ above a tolerance finer than its accuracy")
        if self.backend not in BACKENDS:
            raise ConfigError("solver.backend", self.backend, "unknown backend", allowed=BACKENDS)
        if self.backend == "rows" and self.method not in ROW_METHODS:
            raise ConfigError("solver.method", self.method, "not available with solver.backend=rows",
                              allowed=ROW_METHODS)
        number("solver.window_growth", self.window_growth, at_least=1)

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


