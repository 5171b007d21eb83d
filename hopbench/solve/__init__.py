"""Solving: batched integration to steady states (each trajectory with a status) and Newton polishing."""

from hopbench.solve.integrate import integrate
from hopbench.solve.newton import Polished, polish
from hopbench.solve.trajectories import CONVERGED, STALLED, STATUSES, EnergyTrace, SolverConfig, Trajectories

__all__ = ["CONVERGED", "STALLED", "STATUSES", "EnergyTrace", "Polished", "SolverConfig", "Trajectories", "integrate",
           "polish"]
