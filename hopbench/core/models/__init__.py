"""Models = Lagrangian (activations) + vector field (dynamics, strategies) + energy (energies)."""

from hopbench.core.models.dynamics import (
    CUE_MAPS,
    MODELS,
    NATURAL_STRATEGY,
    Model,
    ModelKind,
    ModelSpec,
    build_model,
)
from hopbench.core.models.energies import ENERGIES, Energy, build_energy
from hopbench.core.models.strategies import STRATEGIES, Backing, Strategy, assess_backing

__all__ = [
    "CUE_MAPS", "ENERGIES", "MODELS", "NATURAL_STRATEGY", "STRATEGIES",
    "Backing", "Energy", "Model", "ModelKind", "ModelSpec", "Strategy",
    "assess_backing", "build_energy", "build_model",
]
