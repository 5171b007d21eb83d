"""Learning W and b by gradient descent (docs/design.md §7, ``task=train``).

Training starts from the configured storage rule (``weights=``: Hebbian, Storkey, pseudo-inverse, …) and
minimises one of two objectives (``task.objective``), each a mean over the P stored patterns ξ (P, N):

- ``fixed_point``: the data loss ℓ(h, ξ) at h = Wξ + b — every pattern a fixed point of the activity map
  a ↦ g(Wa + b), i.e. a steady state of eq. 9 (u = ξ) and of eq. 1 (y = Wξ + b).
- ``denoise``: corrupted cues (the ``cue`` group, fresh each step from the stream "training cues") are
  integrated by the configured model to t = ``horizon`` with torchdiffeq (``method``; ``adjoint`` for O(1)
  memory in the steps) and the loss is ℓ(h(x(T)), ξ), the end-to-end objective; the model (and any strategy
  matrix built from W) is rebuilt at every step.

The data loss ℓ (``task.loss``) acts on the pre-activation h (B, N) of the final state (y for eq. 1 / eq. 13,
Wu + b for eq. 9), so that it means the same for every model: ``mse`` = ‖g(h) − ξ‖²/N; ``cross_entropy`` =
the binary cross-entropy of the unit's output read as a probability — for tanh with gain β and ±1 patterns,
P(ξ_i = +1) = (1 + tanh βh_i)/2 = σ(2βh_i); for sigmoid with {0,1} patterns, σ(βh_i) — computed from the
logits so that a saturated unit with the wrong sign keeps its gradient (the MSE's vanishes there). ``auto``
picks cross_entropy where it applies, else mse.

With ``stability_weight`` > 0 either objective adds mean relu(λ_max(Λ^{1/2} sym(W) Λ^{1/2}) − 1 + margin)²,
Λ = Λ(Wξ + b): at a fixed point the Jacobian of eq. 1, WΛ − I, is similar to Λ^{1/2}WΛ^{1/2} − I, whose spectral
abscissa is at most the numerical abscissa λ_max(Λ^{1/2} sym(W) Λ^{1/2}) − 1 (equal for symmetric W), so the
penalty pushes every stored pattern to be a stable fixed point of the original dynamics (and, through
y = Wu + b, of eq. 9 with R = I).

Convergence. Adam with gradient-norm clipping (``grad_clip``) and a learning-rate schedule: a linear warm-up
over ``warmup_steps`` (Adam's first steps, of size ≈ lr in every entry whatever the gradient, otherwise knock a
good storage rule out of its basins before the moments settle), then ``schedule``: constant, cosine to
``lr_min`` at the last step, or plateau: × ``lr_factor`` after ``lr_patience`` validations without
improvement). Every ``validate_every`` steps (and at step 0, the storage rule itself) the current weights are
validated on held-out cues: ``val_cues_per_pattern`` corruptions per pattern drawn once from their own random
stream ("validation cues" — neither the training cues nor the evaluation's "cues"), integrated to a steady state
by the benchmark's solver; validation accuracy = the fraction with cosine(final activity, ξ) ≥ threshold (§5.1),
validation loss = ℓ at the final states. The best validation (``monitor``: accuracy with the loss as
tie-break, or the loss alone) is kept (``keep_best``); training stops early after ``patience`` validations
without improvement (not during the warm-up). The history (one row per logged step: loss terms, lr, gradient
norm, and at validations val_accuracy, val_loss, val_converged) and the reason training stopped come back with
the trained system.

W is a free matrix, kept symmetric (W = (A + Aᵀ)/2) with ``symmetric`` and zero-diagonal with ``zero_diagonal``.
Shapes: W (N, N), b (N,), patterns and cues (P, N), batches first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.functional import binary_cross_entropy_with_logits
from torchdiffeq import odeint, odeint_adjoint

from hopbench.analysis.metrics import retrieve
from hopbench.core.activations import Lagrangian
from hopbench.core.data import Corruption, PatternSet
from hopbench.core.models import Model
from hopbench.core.network import Network
from hopbench.core.system import System, generator
from hopbench.errors import ConfigError, choice, flag, number
from hopbench.registry import Registry
from hopbench.solve import CONVERGED, SolverConfig
from hopbench.solve.trajectories import FIXED_METHODS

__all__ = ["BOOKKEEPING", "LOSSES", "OBJECTIVES", "STOP_REASONS", "TrainConfig", "TrainResult", "TrainingProblem",
           "data_loss", "stability_penalty", "train"]

LOSSES = ("auto", "mse", "cross_entropy")
#: the columns of a training history row that are not loss terms (the probe adds ``*_fraction`` columns)
BOOKKEEPING = ("step", "time_s", "lr", "grad_norm", "best", "val_accuracy", "val_loss", "val_converged")
SCHEDULES = ("constant", "cosine", "plateau")
MONITORS = ("accuracy", "loss")
#: torchdiffeq methods for the denoising integration (adaptive ones use rtol/atol, fixed ones step_size)
TRAIN_METHODS = ("dopri5", "bosh3", *FIXED_METHODS)
#: why training ended: every step run, no validation improvement for ``patience`` validations, a non-finite loss
STOP_REASONS = ("max_steps", "early_stopping", "non_finite_loss")
#: (activation, pattern kind) -> the logit of P(ξ_i = max) as a multiple of β·h, for cross_entropy
_LOGIT_SCALE = {("tanh", "bipolar"): 2.0, ("sigmoid", "binary"): 1.0}


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (``task=train``'s ``task.<field>``); see the module docstring."""

    objective: str = "fixed_point"  # fixed_point: ℓ(Wξ + b, ξ) | denoise: cue → integrate to horizon → ℓ(h(T), ξ)
    steps: int = 300  # at most this many optimiser steps
    lr: float = 0.01  # Adam's initial learning rate
    symmetric: bool = True  # keep W = Wᵀ
    zero_diagonal: bool = False
    train_bias: bool = True
    loss: str = "auto"  # mse | cross_entropy (tanh & ±1, sigmoid & {0,1}) | auto: cross_entropy where it applies
    stability_weight: float = 0.0  # weight of the stability penalty at the patterns (both objectives)
    margin: float = 0.1  # of the stability penalty
    horizon: float = 5.0  # denoise: integration time of the cues
    method: str = "dopri5"  # denoise: torchdiffeq method (dopri5, bosh3 adaptive; rk4, euler, midpoint: step_size)
    step_size: float = 0.5  # denoise: the step of a fixed-step method
    adjoint: bool = False  # denoise: gradients by torchdiffeq's adjoint method
    cues_per_pattern: int = 4  # denoise: fresh cues per pattern and step
    schedule: str = "cosine"  # constant | cosine (to lr_min at the last step) | plateau (× lr_factor)
    lr_min: float = 1e-4
    lr_factor: float = 0.5  # plateau: the learning rate's factor after lr_patience stale validations
    lr_patience: int = 3
    warmup_steps: int = 20  # linear warm-up (no early stopping or plateau cut before its end)
    grad_clip: float = 1.0  # clip the gradient's global norm (0: off)
    validate_every: int = 10  # held-out cues integrated to a steady state by the solver
    val_cues_per_pattern: int = 4
    monitor: str = "accuracy"  # keep the best held-out accuracy (the loss breaks ties) | loss
    # stop after this many validations without improvement (0: never early); denoising from a good storage rule
    # first loses held-out accuracy for ~100 steps (repro-training) before it gains
    patience: int = 15
    min_delta: float = 1e-3  # a relative validation-loss decrease smaller than this is no improvement
    keep_best: bool = True  # return the best validated weights (else the last)
    log_every: int = 10

    def __post_init__(self) -> None:
        choice("task.objective", self.objective, sorted(OBJECTIVES.names()))
        for key, options in (("loss", LOSSES), ("schedule", SCHEDULES), ("monitor", MONITORS),
                             ("method", TRAIN_METHODS)):
            choice(f"task.{key}", getattr(self, key), options)
        for key in ("steps", "cues_per_pattern", "log_every", "validate_every", "val_cues_per_pattern",
                    "lr_patience"):
            number(f"task.{key}", getattr(self, key), at_least=1, integer=True)
        for key in ("patience", "warmup_steps"):
            number(f"task.{key}", getattr(self, key), at_least=0, integer=True)
        for key in ("lr", "horizon", "step_size"):
            number(f"task.{key}", getattr(self, key), above=0)
        for key in ("stability_weight", "margin", "grad_clip", "min_delta"):
            number(f"task.{key}", getattr(self, key), at_least=0)
        number("task.lr_min", self.lr_min, at_least=0, at_most=self.lr)
        number("task.lr_factor", self.lr_factor, above=0, below=1)
        for key in ("symmetric", "zero_diagonal", "train_bias", "adjoint", "keep_best"):
            flag(f"task.{key}", getattr(self, key))


@dataclass
class TrainResult:
    """The trained system (the best validated weights with ``keep_best``), the history (one dict per logged
    step), why training stopped, and the step whose weights were kept."""

    system: System
    history: list[dict]
    seconds: float
    stop_reason: str
    steps_run: int
    best: dict  # the history row of the kept weights' validation

    @property
    def best_step(self) -> int:
        return int(self.best["step"])


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


DataLoss = Callable[[Tensor, Tensor], Tensor]


def data_loss(name: str, lagrangian: Lagrangian, data: PatternSet) -> DataLoss:
    """ℓ(h, ξ) -> scalar for pre-activations h and targets ξ (B, N) (see the module docstring).

    ``auto`` is cross_entropy for tanh with ±1 patterns and sigmoid with {0,1} patterns, mse otherwise;
    cross_entropy elsewhere is a ConfigError naming ``task.loss``.
    """
    scale = _LOGIT_SCALE.get((lagrangian.name, data.kind))
    if name == "auto":
        name = "mse" if scale is None else "cross_entropy"
    if name == "mse":
        return lambda h, target: (lagrangian.activation(h) - target).pow(2).mean()
    if scale is None:
        raise ConfigError("task.loss", name, f"needs tanh with ±1 patterns or sigmoid with {{0,1}} patterns "
                          f"(here {lagrangian.name} with {data.kind} patterns)", allowed=["auto", "mse"])
    gain = scale * lagrangian.beta
    if data.kind == "bipolar":
        return lambda h, target: binary_cross_entropy_with_logits(gain * h, 0.5 * (1 + target))
    return lambda h, target: binary_cross_entropy_with_logits(gain * h, target)


@dataclass
class TrainingProblem:
    """What every objective needs besides the current network: the system (patterns, model), the settings, the
    cue (``cue`` group), the data loss, the patterns on the network's device and dtype, and the training cues'
    random stream."""

    system: System
    cfg: TrainConfig
    cue: Corruption
    loss: DataLoss
    patterns: Tensor
    step_generator: torch.Generator

    @classmethod
    def build(cls, system: System, cfg: TrainConfig, *, cue: Corruption) -> TrainingProblem:
        net = system.net
        return cls(system, cfg, cue, data_loss(cfg.loss, net.lagrangian, system.data),
                   system.patterns, generator(system.seed, "training cues"))


OBJECTIVES: Registry[dict[str, Tensor]] = Registry("task.objective")


def stability_penalty(net: Network, patterns: Tensor, margin: float) -> Tensor:
    """mean relu(λ_max(Λ^½ sym(W) Λ^½) − 1 + margin)² at h = Wξ + b (the module docstring)."""
    h = patterns @ net.W.T + net.b
    S = net.lagrangian.hessian(h).sqrt().sandwich(0.5 * (net.W + net.W.T))
    return torch.relu(torch.linalg.eigvalsh(S)[..., -1] - 1.0 + margin).pow(2).mean()


def _with_penalty(problem: TrainingProblem, net: Network, name: str, fit: Tensor) -> dict[str, Tensor]:
    terms = {name: fit}
    loss = fit
    if problem.cfg.stability_weight > 0:
        terms["stability_penalty"] = stability_penalty(net, problem.patterns, problem.cfg.margin)
        loss = fit + problem.cfg.stability_weight * terms["stability_penalty"]
    return {**terms, "loss": loss}


@OBJECTIVES.register("fixed_point")
def fixed_point_loss(problem: TrainingProblem, net: Network) -> dict[str, Tensor]:
    """ℓ(Wξ + b, ξ) and the stability penalty at the patterns (see the module docstring)."""
    h = problem.patterns @ net.W.T + net.b
    return _with_penalty(problem, net, "fixed_point", problem.loss(h, problem.patterns))


def _integrate(model: object, x0: Tensor, cfg: TrainConfig, params: tuple[Tensor, ...]) -> Tensor:
    """x(horizon) (B, N) from x0 by torchdiffeq, differentiable (by the adjoint ODE with ``adjoint``)."""
    span = torch.tensor([0.0, cfg.horizon], dtype=x0.dtype, device=x0.device)
    kwargs: dict = ({"method": cfg.method, "options": {"step_size": cfg.step_size}}
                    if cfg.method in FIXED_METHODS else {"method": cfg.method, "rtol": 1e-5, "atol": 1e-6})
    field_ = lambda _, x: model.vector_field(x)  # noqa: E731
    if cfg.adjoint:  # gradients by the adjoint ODE, with respect to the trainable W and b
        return odeint_adjoint(field_, x0, span, adjoint_params=params, **kwargs)[-1]
    return odeint(field_, x0, span, **kwargs)[-1]


@OBJECTIVES.register("denoise")
def denoise_loss(problem: TrainingProblem, net: Network) -> dict[str, Tensor]:
    """ℓ(h(x(T)), ξ) after integrating fresh cues to t = horizon through the configured model."""
    cfg, system = problem.cfg, problem.system
    model = Model(system.model.spec, net)
    targets = problem.patterns.repeat(cfg.cues_per_pattern, 1)
    cues = problem.cue.apply(targets.detach().double().cpu(), system.data.kind, problem.step_generator)
    x0 = model.initial_state(cues.to(device=targets.device, dtype=targets.dtype))
    xT = _integrate(model, x0, cfg, tuple(t for t in (net.W, net.b) if t.requires_grad))
    return _with_penalty(problem, net, "denoise", problem.loss(model.preactivation(xT), targets))


class _Validation:
    """Held-out cues (their own random stream), retrieved as :func:`hopbench.analysis.metrics.retrieve` does, by
    the benchmark's solver."""

    def __init__(self, problem: TrainingProblem, solver: SolverConfig, threshold: float) -> None:
        system, n = problem.system, problem.cfg.val_cues_per_pattern
        self.problem, self.solver, self.threshold = problem, solver, threshold
        self.index = torch.arange(system.data.n_patterns).repeat(n)
        self.targets = problem.patterns.repeat(n, 1)
        self.cues = problem.cue.apply(system.data.patterns.double().repeat(n, 1), system.data.kind,
                                      generator(system.seed, "validation cues"))

    @torch.no_grad()
    def __call__(self, system: System) -> dict[str, float]:
        """Validate the problem's system on other weights (``_system_on``)."""
        traj, outcome = retrieve(system, system.model, self.index, self.cues, self.solver, threshold=self.threshold)
        loss = float(self.problem.loss(system.model.preactivation(traj.x), self.targets))
        return {"val_accuracy": float(outcome["success"].double().mean()),
                "val_loss": loss if math.isfinite(loss) else math.inf,
                "val_converged": float((traj.status == CONVERGED).double().mean())}


def _better(row: dict, best: dict | None, cfg: TrainConfig) -> bool:
    """Whether a validation improves on the best one: a higher accuracy (``monitor=accuracy``), or the same
    accuracy (any with ``monitor=loss``) and a loss lower by more than ``min_delta`` relative."""
    if best is None:
        return True
    if cfg.monitor == "accuracy" and row["val_accuracy"] != best["val_accuracy"]:
        return row["val_accuracy"] > best["val_accuracy"]
    return row["val_loss"] < best["val_loss"] - cfg.min_delta * abs(best["val_loss"])


def _scheduled_lr(cfg: TrainConfig, step: int, lr: float) -> float:
    """The learning rate of ``step`` for the warm-up and the cosine schedule (``lr``, the current one, otherwise)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    if cfg.schedule == "cosine":
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * progress))
    return cfg.lr if step == cfg.warmup_steps else lr


def train(system: System, cfg: TrainConfig, *, cue: Corruption,
          solver: SolverConfig | None = None, threshold: float = 0.95,
          probe: Callable[[System], dict] | None = None,
          on_log: Callable[[dict], None] | None = None) -> TrainResult:
    """Minimise ``cfg.objective`` from the system's weights; returns the trained system (same data, new W, b).

    ``solver`` integrates the validation cues (default: the benchmark's SolverConfig()); ``threshold`` is the
    validation's retrieval criterion; ``probe(system)`` -> scalars is called at every validation with the
    current weights and its values join that history row (e.g. stability fractions as the weights learn).
    The patterns must be the network's only neurons (no hidden layer): ``weights=bipartite`` is refused.
    """
    net = system.net
    if net.n_visible != net.n:
        raise ValueError("task=train needs every neuron to carry the patterns (no hidden layer)")
    problem = TrainingProblem.build(system, cfg, cue=cue)
    validation = _Validation(problem, solver or SolverConfig(), threshold)
    params = _Parameters(net, cfg)
    optimiser = torch.optim.Adam([p for p in params.parameters() if p.requires_grad], lr=cfg.lr)
    objective = OBJECTIVES.get(cfg.objective)
    history: list[dict] = []
    best: dict | None = None
    best_weights: tuple[Tensor, Tensor] | None = None
    lr, stale, stale_lr, stop_reason, step = _scheduled_lr(cfg, 0, cfg.lr), 0, 0, "max_steps", 0
    start = time.perf_counter()
    for step in range(cfg.steps + 1):
        current = Network(params.W(), params.b, net.lagrangian, net.visible)
        terms = objective(problem, current)
        finite = bool(torch.isfinite(terms["loss"].detach()))
        if not finite and step == 0:
            raise FloatingPointError(f"task=train: the loss is {float(terms['loss'].detach())} at the initial "
                                     "weights")
        row: dict = {"step": step, "lr": lr, **{k: float(v.detach()) for k, v in terms.items()}}
        if finite and step < cfg.steps:  # the gradient of this step's loss (its norm goes into this row)
            optimiser.zero_grad()
            terms["loss"].backward()
            norm = torch.nn.utils.clip_grad_norm_(params.parameters(), cfg.grad_clip if cfg.grad_clip > 0
                                                  else math.inf)
            row["grad_norm"] = float(norm)
        validate = finite and (step % cfg.validate_every == 0 or step == cfg.steps)
        if validate:
            frozen = Network(current.W.detach().clone(), current.b.detach().clone(), net.lagrangian, net.visible)
            checked = _system_on(system, frozen)
            row.update(validation(checked))
            if probe is not None:
                row.update(probe(checked))
            row["best"] = _better(row, best, cfg)
            if row["best"]:
                best, best_weights, stale, stale_lr = row, (frozen.W, frozen.b), 0, 0
            else:
                stale, stale_lr = stale + 1, stale_lr + 1
        if validate or step % cfg.log_every == 0 or not finite:
            row["time_s"] = time.perf_counter() - start
            history.append(row)
            if on_log is not None:
                on_log(row)
        if not finite:
            stop_reason = "non_finite_loss"
            break
        if step == cfg.steps:
            break
        if cfg.patience and stale >= cfg.patience and step >= cfg.warmup_steps:
            stop_reason = "early_stopping"
            break
        for group in optimiser.param_groups:
            group["lr"] = lr
        optimiser.step()
        lr = _scheduled_lr(cfg, step + 1, lr)  # the learning rate of the next step
        if step < cfg.warmup_steps:
            stale_lr = 0
        elif cfg.schedule == "plateau" and stale_lr >= cfg.lr_patience:
            lr, stale_lr = max(cfg.lr_min, lr * cfg.lr_factor), 0
    assert best is not None and best_weights is not None  # step 0 always validates (or raises)
    if cfg.keep_best:
        W, b = best_weights
    else:
        W, b = params.W().detach().clone(), params.b.detach().clone()
    trained = Network(W, b, net.lagrangian, net.visible)
    return TrainResult(_system_on(system, trained), history, time.perf_counter() - start,
                       stop_reason, step, best)


def _system_on(system: System, net: Network) -> System:
    """The system's patterns under its model on another network."""
    return System(system.data, net, Model(system.model.spec, net), system.seed)
