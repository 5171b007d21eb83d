"""The three models of docs/design.md §2 as one form: ẋ = R(x) r(x).

- ``original`` (eq. 1): state y, r = W g(y) − y + b, R = I, energy eq. 4, readout g(y).
- ``modified`` (eq. 9): state u, r = g(Wu + b) − u, R from a strategy, energies eq. 10, readout u.
- ``modified_y`` (eq. 13): state y, r as in eq. 1, R from a strategy, energy eq. 14, readout g(y).

Steady states correspond through y = W u + b. Jacobians at a fixed point (where R's own derivative
multiplies r = 0): y-state J = R(WΛ − I); u-state J = R(ΛW − I).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hopbench.core.activations import Curvature
from hopbench.core.models.energies import ENERGIES, Energy, check_state
from hopbench.core.models.strategies import STRATEGIES, Backing, Strategy, assess_backing
from hopbench.core.network import Network
from hopbench.errors import choice
from hopbench.registry import Registry

__all__ = ["CUE_MAPS", "MODELS", "NATURAL_STRATEGY", "Model", "ModelKind", "ModelSpec", "build_model"]

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
    """Everything needed to rebuild a model on another network (e.g. a float64 copy for analysis): the model
    kind, the unbound strategy and energy options, and the cue map."""

    kind: ModelKind
    strategy: Strategy
    energy: Energy
    cue_map: str = "affine"

    @property
    def name(self) -> str:
        return self.kind.name


class Model:
    """A model bound to a network: vector field, energy, Jacobian, readout and cue map."""

    def __init__(self, spec: ModelSpec, net: Network) -> None:
        self.spec, self.form, self.net = spec, spec.kind.form, net
        self.energy: Energy = spec.energy.bind(net)
        self.strategy: Strategy = spec.strategy.bind(net, self.energy)
        self.backing: Backing = assess_backing(self.strategy, self.form.state, self.energy)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def state(self) -> str:
        return self.form.state

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Model:
        """The same model on a converted network (strategy matrices are recomputed)."""
        return Model(self.spec, self.net.to(device, dtype))

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
        """The starting state for a cue a₀ (B, N) given in activity space (docs/design.md §2)."""
        return self.form.initial_state(self.net, a0, self.spec.cue_map)


class ModelKind:
    """A config-group option of ``model``: the state variables, the form of ẋ and the natural strategy.

    ``natural``: the strategy ``strategy=auto`` picks — the one that backs a Lyapunov function without flat
    directions for any W (identity for eq. 1, I − WᵀΛ for eq. 9, I − ΛWᵀ for eq. 13).
    """

    name: str = ""
    form: type[YState] | type[UState] = YState
    natural: str = "identity"
    #: R = I whatever the strategy config says (the original dynamics)
    fixed_identity: bool = False

    @property
    def state(self) -> str:
        return self.form.state

    def resolve(self, strategy: Strategy | None, energy: Energy | None, cue_map: str = "affine") -> ModelSpec:
        """The model's strategy and energy (None: the natural strategy, the strategy's intended energy),
        checked against this model's state."""
        choice("cue_map", cue_map, CUE_MAPS)
        strategy = self.strategy_for(strategy)
        if energy is None:
            energy = ENERGIES.build(self.intended_energy(strategy))
        check_state(energy, self.state)
        return ModelSpec(self, strategy, energy, cue_map)

    def strategy_for(self, strategy: Strategy | None) -> Strategy:
        """The strategy this model runs: R = I for the original dynamics, the natural one for None."""
        if strategy is None or self.fixed_identity:
            return STRATEGIES.build("identity" if self.fixed_identity else self.natural)
        return strategy

    def intended_energy(self, strategy: Strategy) -> str:
        """The energy ``energy=auto`` gives: the one the paper pairs ``strategy`` with in this model's state."""
        return type(strategy).intended.get(self.state, "eq14" if self.state == "y" else "e2")

    def build(self, net: Network, strategy: Strategy | None = None, energy: Energy | None = None,
              cue_map: str = "affine") -> Model:
        return Model(self.resolve(strategy, energy, cue_map), net)


MODELS: Registry[ModelKind] = Registry("model")


@MODELS.register("original")
class Original(ModelKind):
    """Krotov–Hopfield dynamics (eq. 1) in y; R = I whatever the strategy config says; energy eq. 4."""

    name, form, natural, fixed_identity = "original", YState, "identity", True


@MODELS.register("modified")
class Modified(ModelKind):
    """The modified dynamics (eq. 9) in u = activity: u̇ = R(u)(g(Wu + b) − u); energies eq. 10."""

    name, form, natural = "modified", UState, "i_minus_wt_lambda"


@MODELS.register("modified_y")
class ModifiedY(ModelKind):
    """The modified dynamics in y (eq. 13): ẏ = R(y)(W g(y) − y + b); energy eq. 14."""

    name, form, natural = "modified_y", YState, "y_i_minus_lambda_wt"


#: ``strategy=auto`` per model (see :class:`ModelKind`)
NATURAL_STRATEGY = {name: MODELS.get(name).natural for name in MODELS}


def build_model(kind: str | ModelKind, net: Network, *, strategy: str | Strategy | None = None,
                strategy_params: dict | None = None, energy: str | Energy | None = None,
                energy_params: dict | None = None, cue_map: str = "affine") -> Model:
    """A model (original | modified | modified_y, or a :class:`ModelKind`) on ``net``. Strategy and energy are
    options or names (with ``*_params``); None or ``"auto"`` picks the model's natural strategy
    (:data:`NATURAL_STRATEGY`) and the strategy's intended energy."""
    model_kind = MODELS.build(kind) if isinstance(kind, str) else kind
    if isinstance(strategy, str):
        strategy = None if strategy == "auto" else STRATEGIES.build(strategy, strategy_params)
    if energy in (None, "auto") and energy_params:  # the intended energy, with parameters
        energy = model_kind.intended_energy(model_kind.strategy_for(strategy))
    if isinstance(energy, str):
        energy = None if energy == "auto" else ENERGIES.build(energy, energy_params)
    return model_kind.build(net, strategy, energy, cue_map)
