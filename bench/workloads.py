"""The problems the benchmark runs: Hebbian tanh networks, flipped cues, retrieval success, fixed points."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hopbench import compose
from hopbench.core.data import corrupt
from hopbench.core.system import System
from hopbench.solve import polish

__all__ = ["BETA", "FLIP", "SUCCESS", "RetrievalProblem", "fixed_points", "hebbian_system", "retrieval_problem",
           "retrieved"]

BETA = 4.0  # tanh gain
FLIP = 0.05  # fraction of signs flipped in a cue
SUCCESS = 0.95  # retrieval succeeds when cosine(readout, stored pattern) >= SUCCESS


def hebbian_system(n: int, load: float, device: torch.device, dtype: str = "float32", seed: int = 0) -> System:
    """Original (Krotov–Hopfield) dynamics, tanh β = 4, Hebbian W of random ±1 patterns at load α."""
    return compose(model="original", activation="tanh", activation_params={"beta": BETA}, weights="hebbian",
                   dataset="random_binary", n_neurons=n, load=load, seed=seed, device=str(device), dtype=dtype)


@dataclass
class RetrievalProblem:
    """B cues of the stored patterns (cue i targets pattern i mod P) and their initial states."""

    system: System
    targets: Tensor  # (B, N) float64 CPU, the stored pattern each cue was made from
    cues: Tensor  # (B, N) float64 CPU, 5 % of signs flipped
    x0: Tensor  # (B, N) initial states on the system's device and dtype

    @property
    def n(self) -> int:
        return self.targets.shape[1]

    @property
    def batch(self) -> int:
        return self.targets.shape[0]


def flipped_cues(patterns: Tensor, batch: int, level: float = FLIP, seed: int = 1) -> tuple[Tensor, Tensor]:
    """(targets, cues): cue i is pattern i mod P with exactly round(level·N) signs flipped (hopbench's flip cue)."""
    targets = patterns[torch.arange(batch) % patterns.shape[0]]
    return targets, corrupt("flip", {"level": level}, targets, "bipolar", torch.Generator().manual_seed(seed))


def retrieval_problem(n: int, batch: int, load: float, device: torch.device,
                      dtype: str = "float32") -> RetrievalProblem:
    system = hebbian_system(n, load, device, dtype)
    targets, cues = flipped_cues(system.data.patterns, batch)
    x0 = system.model.initial_state(cues.to(device=device, dtype=system.dtype))
    return RetrievalProblem(system, targets, cues, x0)


def retrieved(activity: Tensor, targets: Tensor) -> Tensor:
    """(B,) bool: cosine(activity, target) >= SUCCESS, computed in float64 on the CPU."""
    cos = torch.nn.functional.cosine_similarity(activity.detach().cpu().double(), targets.double(), dim=-1)
    return cos >= SUCCESS


def fixed_points(n: int, batch: int, load: float, device: torch.device) -> tuple[System, Tensor, int]:
    """(float64 system, x* (batch, N), number of distinct points): the stored patterns ±ξ of a Hebbian tanh
    network mapped to y = W ξ and Newton-polished; the 2P distinct points are repeated to fill the batch."""
    system = hebbian_system(n, load, device, dtype="float64")
    model = system.model
    signed = torch.cat([system.data.patterns, -system.data.patterns]).to(device)
    out = polish(model, model.initial_state(signed))
    if not bool(out.converged.all()):
        raise RuntimeError(f"polish did not converge for {int((~out.converged).sum())} of {signed.shape[0]} points")
    x = out.x[torch.arange(batch, device=out.x.device) % out.x.shape[0]].contiguous()
    return system, x, out.x.shape[0]
