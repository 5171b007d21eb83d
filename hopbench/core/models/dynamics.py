"""The three models of DESIGN §2 as one form: ẋ = R(x) r(x).

- ``original`` (eq. 1): state y, r = W g(y) − y + b, R = I, energy eq. 4, readout g(y).
- ``modified`` (eq. 9): state u, r = g(Wu + b) − u, R from a strategy, energies eq. 10, readout u.
- ``modified_y`` (eq. 13): state y, r as in eq. 1, R from a strategy, energy eq. 14, readout g(y).

Steady states correspond through y = W u + b. Jacobians at a fixed point (where R's own derivative
multiplies r = 0): y-state J = R(WΛ − I); u-state J = R(ΛW − I).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from hopbench.core.activations import Curvature
from hopbench.core.models.energies import Energy, build_energy
from hopbench.core.models.strategies import STRATEGIES, Backing, Strategy, assess_backing
from hopbench.core.network import Network
from hopbench.errors import ConfigError
from hopbench.registry import Registry

__all__ = ["CUE_MAPS", "MODELS", "NATURAL_STRATEGY", "Model", "ModelSpec", "build_model"]

CUE_MAPS = ("affine", "identity")
#: ``strategy=auto``: the strategy that backs a Lyapunov function without flat directions for any W
NATURAL_STRATEGY = {"original": "identity", "modified": "i_minus_wt_lambda", "modified_y": "y_i_minus_lambda_wt"}


class YState:
    """Variables y of eq. 1 / eq. 13."""

    state = "y"

    @staticmethod
    def preactivation(net: Network, y: Tensor) -> Tensor:
        return y

    @staticmethod
    def residual(net: Network, y: Tensor, h: Tensor) -> Tensor:
        """r = W g(y) − y + b."""
        return net.lagrangian.activation(h) @ net.W.T - y + net.b

    @staticmethod
    def residual_jacobian(net: Network, curvature: Curvature) -> Tensor:
        """∂r/∂y = W Λ(y) − I."""
        J = curvature.right(net.W)
        return J - torch.eye(net.n, dtype=J.dtype, device=J.device)

    @staticmethod
    def readout(net: Network, y: Tensor) -> Tensor:
        return net.lagrangian.activation(y)

    @staticmethod
    def initial_state(net: Network, a0: Tensor, cue_map: str) -> Tensor:
        """y₀ = W a₀ + b (the affine map of the steady states), or y₀ = a₀ with cue_map=identity."""
        return a0 @ net.W.T + net.b if cue_map == "affine" else a0.clone()


class UState:
    """Variables u of eq. 9."""

    state = "u"

    @staticmethod
    def preactivation(net: Network, u: Tensor) -> Tensor:
        return u @ net.W.T + net.b

    @staticmethod
    def residual(net: Network, u: Tensor, h: Tensor) -> Tensor:
        """r = g(W u + b) − u."""
        return net.lagrangian.activation(h) - u

    @staticmethod
    def residual_jacobian(net: Network, curvature: Curvature) -> Tensor:
        """∂r/∂u = Λ(Wu + b) W − I."""
        J = curvature.left(net.W)
        return J - torch.eye(net.n, dtype=J.dtype, device=J.device)

    @staticmethod
    def readout(net: Network, u: Tensor) -> Tensor:
        return u

    @staticmethod
    def initial_state(net: Network, a0: Tensor, cue_map: str) -> Tensor:
        return a0.clone()


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model on another network (e.g. a float64 copy for analysis)."""

    name: str
    strategy: str = "identity"
    strategy_params: dict = field(default_factory=dict)
    energy: str = "auto"
    energy_params: dict = field(default_factory=dict)
    cue_map: str = "affine"


class Model:
    """A model bound to a network: vector field, energy, Jacobian, readout and cue map."""

    def __init__(self, spec: ModelSpec, form: type[YState] | type[UState], net: Network) -> None:
        if spec.cue_map not in CUE_MAPS:
            raise ConfigError("cue_map", spec.cue_map, "unknown cue map", allowed=CUE_MAPS)
        self.spec, self.form, self.net = spec, form, net
        strategy_cls = STRATEGIES.get(spec.strategy)
        energy_name = spec.energy
        if energy_name == "auto":
            energy_name = strategy_cls.intended.get(form.state, "eq14" if form.state == "y" else "e2")
        self.energy: Energy = build_energy(energy_name, net, spec.energy_params, state=form.state)
        self.strategy: Strategy = STRATEGIES.build(spec.strategy, spec.strategy_params, net=net, energy=self.energy)
        self.backing: Backing = assess_backing(self.strategy, form.state, self.energy)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def state(self) -> str:
        return self.form.state

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Model:
        """The same model on a converted network (strategy matrices are recomputed)."""
        return Model(self.spec, self.form, self.net.to(device, dtype))

    # dynamics -------------------------------------------------------------------------------------
    def preactivation(self, x: Tensor) -> Tensor:
        """h (B, N): the argument of g (y, or W u + b)."""
        return self.form.preactivation(self.net, x)

    def residual(self, x: Tensor) -> Tensor:
        """The fixed-point residual r(x) (B, N): zero exactly at steady states."""
        return self.form.residual(self.net, x, self.preactivation(x))

    def vector_field(self, x: Tensor) -> Tensor:
        """ẋ = R(x) r(x), (B, N) -> (B, N)."""
        h = self.preactivation(x)
        r = self.form.residual(self.net, x, h)
        return r if self.strategy.is_identity else self.strategy.apply(x, h, r)

    def curvature(self, x: Tensor) -> Curvature:
        """Λ at the pre-activation of x."""
        return self.net.lagrangian.hessian(self.preactivation(x))

    def residual_jacobian(self, x: Tensor) -> Tensor:
        """∂r/∂x (B, N, N) (exact everywhere)."""
        return self.form.residual_jacobian(self.net, self.curvature(x))

    def jacobian(self, x: Tensor) -> Tensor:
        """J = R(x) ∂r/∂x (B, N, N): the Jacobian of the vector field at fixed points (r = 0)."""
        dr = self.residual_jacobian(x)
        return dr if self.strategy.is_identity else self.strategy.matrix(x, self.preactivation(x)) @ dr

    def symmetric_root(self, x: Tensor) -> Curvature | None:
        """Λ^{1/2} at x (B, N) when J is similar to the symmetric Λ^{1/2} W Λ^{1/2} − I, else None.

        With R = I, W = Wᵀ and Λ ⪰ 0: WΛ − I and ΛW − I are similar to Λ^{1/2} W Λ^{1/2} − I.
        """
        if not (self.strategy.is_identity and self.net.is_symmetric()):
            return None
        lam = self.curvature(x)
        if bool((lam.eigenvalues() < -1e-12).any()):
            return None
        return lam.sqrt()

    def symmetric_jacobian(self, x: Tensor) -> Tensor | None:
        """A symmetric matrix (B, N, N) with the spectrum of J (see :meth:`symmetric_root`), else None."""
        root = self.symmetric_root(x)
        if root is None:
            return None
        S = root.sandwich(self.net.W)
        S.diagonal(dim1=-2, dim2=-1).sub_(1.0)  # symmetric up to rounding; eigvalsh reads one triangle
        return S

    # activity space -------------------------------------------------------------------------------
    def readout(self, x: Tensor) -> Tensor:
        """Activity a (B, N): g(y) for y-state models, u for the modified model."""
        return self.form.readout(self.net, x)

    def initial_state(self, a0: Tensor) -> Tensor:
        """The starting state for a cue a₀ (B, N) given in activity space (DESIGN §2)."""
        return self.form.initial_state(self.net, a0, self.spec.cue_map)


MODELS: Registry[Model] = Registry("model")


@MODELS.register("original")
def _original(spec: ModelSpec, net: Network) -> Model:
    """Krotov–Hopfield dynamics (eq. 1); R = I whatever the strategy config says."""
    spec = ModelSpec("original", "identity", {}, spec.energy, spec.energy_params, spec.cue_map)
    return Model(spec, YState, net)


@MODELS.register("modified")
def _modified(spec: ModelSpec, net: Network) -> Model:
    return Model(spec, UState, net)


@MODELS.register("modified_y")
def _modified_y(spec: ModelSpec, net: Network) -> Model:
    return Model(spec, YState, net)


def build_model(name: str, net: Network, *, strategy: str = "identity", strategy_params: dict | None = None,
                energy: str = "auto", energy_params: dict | None = None, cue_map: str = "affine") -> Model:
    """A model by name (original | modified | modified_y) on ``net``; ``strategy="auto"`` picks
    :data:`NATURAL_STRATEGY` (identity, i_minus_wt_lambda, y_i_minus_lambda_wt)."""
    factory = MODELS.get(name)
    if strategy == "auto":
        strategy = NATURAL_STRATEGY[name]
    spec = ModelSpec(name, strategy, dict(strategy_params or {}), energy, dict(energy_params or {}), cue_map)
    return factory(spec, net)
