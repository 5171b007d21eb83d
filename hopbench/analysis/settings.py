"""Settings of the measurements of docs/design.md §5 (config keys ``retrieval``, ``spurious``, ``lyapunov``).

Each is checked when built; the typed configs of the command line are generated from these classes, so
their defaults live here once.
"""

from __future__ import annotations

from dataclasses import dataclass

from hopbench.errors import flag, number

__all__ = ["LyapunovSettings", "RetrievalSettings", "SpuriousSettings"]


@dataclass(frozen=True)
class RetrievalSettings:
    """§5.1: ``n_cues`` corrupted cues per stored pattern; success when cosine(final activity, target) ≥
    ``threshold``."""

    n_cues: int = 10
    threshold: float = 0.95

    def __post_init__(self) -> None:
        number("retrieval.n_cues", self.n_cues, at_least=1, integer=True)
        number("retrieval.threshold", self.threshold, above=0, at_most=1)


@dataclass(frozen=True)
class SpuriousSettings:
    """§5.3: ``n_states`` random starting states (their end states are classified with the ``end_states``
    tolerances)."""

    n_states: int = 200

    def __post_init__(self) -> None:
        number("spurious.n_states", self.n_states, at_least=1, integer=True)


@dataclass(frozen=True)
class LyapunovSettings:
    """§5.6: ``n_states`` sampled states (a third cues, a third random, a third along trajectories); a
    violation when dE/dt > ``tol``·‖∇E‖‖ẋ‖; an energy rise between solver steps larger than
    ``trajectory_rtol`` (relative) counts; ``record_trajectories`` keeps energy traces of the cues."""

    n_states: int = 240
    tol: float = 1e-6
    trajectory_rtol: float = 1e-4
    record_trajectories: bool = True

    def __post_init__(self) -> None:
        number("lyapunov.n_states", self.n_states, at_least=3, integer=True)
        number("lyapunov.tol", self.tol, at_least=0, below=1)
        number("lyapunov.trajectory_rtol", self.trajectory_rtol, at_least=0, below=1)
        flag("lyapunov.record_trajectories", self.record_trajectories)
