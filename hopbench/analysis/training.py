"""Learning W and b by gradient descent (docs/design.md §7, ``task=train``).

Training starts from the configured storage rule (``weights=``) and minimises one of two objectives
(``task.objective``), each a mean over the P stored patterns ξ (P, N):

- ``fixed_point``: L = mean ‖ξ − g(Wξ + b)‖² / N — every pattern a fixed point of the activity map, i.e. a
  steady state of eq. 9 (u = ξ) and of eq. 1 (y = Wξ + b). With ``stability_weight`` > 0 it adds
  mean relu(λ_max(Λ^{1/2} sym(W) Λ^{1/2}) − 1 + margin)², Λ = Λ(Wξ + b): at a fixed point the Jacobian of eq. 1,
  WΛ − I, is similar to Λ^{1/2}WΛ^{1/2} − I, whose spectral abscissa is at most the numerical abscissa
  λ_max(Λ^{1/2} sym(W) Λ^{1/2}) − 1 (equal for symmetric W), so the penalty pushes every stored pattern to be a
  stable fixed point of the original dynamics (and, through y = Wu + b, of eq. 9 with R = I).
- ``denoise``: corrupted cues (the ``cue`` group, fresh each step) are integrated by the configured model to
  t = ``horizon`` with torchdiffeq (``adjoint`` for O(1) memory in the steps) and L = mean ‖a(T) − ξ‖² / N,
  the end-to-end objective; the model (and any strategy matrix built from W) is rebuilt at every step.

W is a free matrix, kept symmetric (W = (A + Aᵀ)/2) with ``symmetric`` and zero-diagonal with ``zero_diagonal``.
Shapes: W (N, N), b (N,), patterns and cues (P, N), batches first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torchdiffeq import odeint, odeint_adjoint

from hopbench.core.data import Corruption
from hopbench.core.models import Model
from hopbench.core.network import Network
from hopbench.core.system import System, generator
from hopbench.errors import ConfigError
from hopbench.registry import Registry

__all__ = ["OBJECTIVES", "TrainConfig", "TrainResult", "train"]

#: task=train's switches for the §5 evaluation that follows training (as task=evaluate's)
EVALUATION_PARTS = ("retrieval", "spurious", "stability", "lyapunov")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (``conf/task/train.yaml``)."""

    objective: str = "fixed_point"
    steps: int = 300
    lr: float = 0.01
    symmetric: bool = True
    zero_diagonal: bool = False
    train_bias: bool = True
    stability_weight: float = 0.0
    margin: float = 0.1
    horizon: float = 5.0
    adjoint: bool = False
    cues_per_pattern: int = 4
    log_every: int = 10

    @classmethod
    def from_params(cls, params: dict) -> TrainConfig:
        """From ``task=train``'s parameters; the evaluation switches (retrieval, …) belong to the evaluation."""
        unknown = set(params) - set(cls.__dataclass_fields__) - set(EVALUATION_PARTS)
        if unknown:
            key = sorted(unknown)[0]
            raise ConfigError(f"task.{key}", params[key], "unknown config key for task=train",
                              allowed=sorted(cls.__dataclass_fields__))
        return cls(**{k: v for k, v in params.items() if k in cls.__dataclass_fields__})

    def __post_init__(self) -> None:
        OBJECTIVES.get(self.objective)  # unknown objective: a ConfigError naming task.objective
        for key in ("steps", "cues_per_pattern", "log_every"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"task.{key}", value, "must be a positive integer")
        for key in ("lr", "horizon"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"task.{key}", getattr(self, key), "must be > 0")
        for key in ("stability_weight", "margin"):
            if not getattr(self, key) >= 0:
                raise ConfigError(f"task.{key}", getattr(self, key), "must be ≥ 0")


@dataclass
class TrainResult:
    """The trained system and the loss history (one dict per logged step)."""

    system: System
    history: list[dict]
    seconds: float


class _Parameters(torch.nn.Module):
    """W and b as trainable tensors, with the configured structure."""

    def __init__(self, net: Network, cfg: TrainConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.A = torch.nn.Parameter(net.W.detach().clone())
        self.b = torch.nn.Parameter(net.b.detach().clone(), requires_grad=cfg.train_bias)

    def W(self) -> Tensor:
        W = 0.5 * (self.A + self.A.T) if self.cfg.symmetric else self.A
        return W - torch.diag(torch.diagonal(W)) if self.cfg.zero_diagonal else W


Objective = Callable[..., dict[str, Tensor]]
OBJECTIVES: Registry[dict[str, Tensor]] = Registry("task.objective")


@OBJECTIVES.register("fixed_point")
def fixed_point_loss(*, net: Network, patterns: Tensor, cfg: TrainConfig, **_: object) -> dict[str, Tensor]:
    """‖ξ − g(Wξ + b)‖²/N and the stability penalty at the patterns (see the module docstring)."""
    h = patterns @ net.W.T + net.b
    fit = (patterns - net.lagrangian.activation(h)).pow(2).mean()
    terms = {"fixed_point": fit}
    if cfg.stability_weight > 0:
        root = net.lagrangian.hessian(h).sqrt()
        S = root.sandwich(0.5 * (net.W + net.W.T))
        excess = torch.relu(torch.linalg.eigvalsh(S)[..., -1] - 1.0 + cfg.margin)
        terms["stability_penalty"] = excess.pow(2).mean()
    terms["loss"] = fit + cfg.stability_weight * terms.get("stability_penalty", torch.zeros_like(fit))
    return terms


@OBJECTIVES.register("denoise")
def denoise_loss(*, net: Network, patterns: Tensor, cfg: TrainConfig, system: System,
                 cue: Corruption, step_generator: torch.Generator) -> dict[str, Tensor]:
    """‖a(T) − ξ‖²/N after integrating fresh cues to t = horizon through the configured model."""
    model = Model(system.model.spec, net)
    targets = patterns.repeat(cfg.cues_per_pattern, 1)
    cues = cue.apply(targets.detach().double().cpu(), system.data.kind, step_generator)
    x0 = model.initial_state(cues.to(device=patterns.device, dtype=patterns.dtype))
    span = torch.tensor([0.0, cfg.horizon], dtype=patterns.dtype, device=patterns.device)
    if cfg.adjoint:  # gradients by the adjoint ODE, with respect to the trainable W and b
        adjoint_params = tuple(t for t in (net.W, net.b) if t.requires_grad)
        xT = odeint_adjoint(lambda _, x: model.vector_field(x), x0, span, rtol=1e-5, atol=1e-6,
                            adjoint_params=adjoint_params)[-1]
    else:
        xT = odeint(lambda _, x: model.vector_field(x), x0, span, rtol=1e-5, atol=1e-6)[-1]
    fit = (model.readout(xT) - targets).pow(2).mean()
    return {"denoise": fit, "loss": fit}


def train(system: System, cfg: TrainConfig, *, cue: Corruption,
          on_log: Callable[[dict], None] | None = None) -> TrainResult:
    """Minimise ``cfg.objective`` from the system's weights; returns the trained system (same data, new W, b).

    The patterns must be the network's only neurons (no hidden layer): ``weights=bipartite`` is refused.
    """
    net = system.net
    if net.n_visible != net.n:
        raise ValueError("task=train needs every neuron to carry the patterns (no hidden layer)")
    params = _Parameters(net, cfg)
    optimiser = torch.optim.Adam([p for p in params.parameters() if p.requires_grad], lr=cfg.lr)
    patterns = system.data.patterns.to(device=net.device, dtype=net.dtype)
    objective = OBJECTIVES.get(cfg.objective)
    gen = generator(system.seed, "training cues")
    history: list[dict] = []
    start = time.perf_counter()
    for step in range(cfg.steps + 1):
        current = Network(params.W(), params.b, net.lagrangian, net.visible)
        terms = objective(net=current, patterns=patterns, cfg=cfg, system=system,
                          cue=cue, step_generator=gen)
        if not bool(torch.isfinite(terms["loss"].detach())):
            raise FloatingPointError(f"task=train: the loss became {float(terms['loss'].detach())} at step {step} "
                                     f"(lower task.lr={cfg.lr})")
        if step % cfg.log_every == 0 or step == cfg.steps:
            row = {"step": step, **{k: float(v.detach()) for k, v in terms.items()},
                   "time_s": time.perf_counter() - start}
            history.append(row)
            if on_log is not None:
                on_log(row)
        if step == cfg.steps:
            break
        optimiser.zero_grad()
        terms["loss"].backward()
        optimiser.step()
    with torch.no_grad():
        trained = Network(params.W().detach().clone(), params.b.detach().clone(), net.lagrangian, net.visible)
    return TrainResult(System(system.data, trained, Model(system.model.spec, trained),
                              system.seed), history, time.perf_counter() - start)
