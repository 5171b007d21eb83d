"""task=train (docs/design.md §7): the objectives are the quantities they claim to be, training achieves them,
and the training loop (validation on held-out cues, schedules, early stopping, best weights) does what it says."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torchdiffeq import odeint

from hopbench import compose
from hopbench.analysis.end_states import cosine
from hopbench.analysis.metrics import retrieval
from hopbench.analysis.training import (
    OBJECTIVES,
    TrainConfig,
    TrainingProblem,
    data_loss,
    denoise_loss,
    fixed_point_loss,
    stability_penalty,
    train,
)
from hopbench.core.activations import build_activation
from hopbench.core.data import Flip
from hopbench.core.network import Network
from hopbench.core.system import generator
from hopbench.errors import ConfigError
from hopbench.solve import SolverConfig
from tests.conftest import DEVICE, F64, run_inprocess
from tests.test_app import wandb_records

MEMORY = dict(model="original", activation="smooth_leaky_relu", weights="goe", weights_params={"sigma": 0.5},
              dataset="sparse_binary", dataset_params={"coding_level": 0.3, "exact": True},
              n_neurons=30, n_patterns=4, seed=2, device=str(DEVICE), dtype="float64")
#: objective tests: no early stopping, the last weights (the loop's own tests are below)
PLAIN = dict(patience=0, keep_best=False, schedule="constant")
FLIP = Flip(level=0.1)


def bipolar_memory(n: int = 32, p: int = 12, weights: str = "pseudoinverse", model: str = "original",
                   strategy: str = "identity", seed: int = 0):
    return compose(model=model, strategy=strategy, activation="tanh", activation_params={"beta": 4.0},
                   weights=weights, n_neurons=n, n_patterns=p, seed=seed, device=str(DEVICE), dtype="float64")


def test_fixed_point_training_makes_every_pattern_a_steady_state_of_eq1() -> None:
    """From a random GOE W, gradient descent on ‖ξ − g(Wξ + b)‖² makes each {0,1} pattern ξ a steady state
    y = Wξ + b of eq. 1 — checked with the model's own residual, not with the loss. (The smooth leaky ReLU is
    invertible with g' > 0.15: with relu, neurons that should be active but start dead get no gradient.)"""
    system = compose(**MEMORY)
    X = system.data.patterns.to(DEVICE, F64)
    before = system.model.residual(system.model.initial_state(X)).abs().amax()
    cfg = TrainConfig(steps=1500, lr=0.02, log_every=100, validate_every=1500, grad_clip=0.0, **PLAIN)
    result = train(system, cfg, cue=FLIP, solver=SolverConfig(t_max=20.0))
    model = result.system.model
    after = model.residual(model.initial_state(X)).abs().amax()
    assert float(before) > 0.5 and float(after) < 0.01 * float(before)
    assert result.history[-1]["loss"] < 1e-3 * result.history[0]["loss"]
    assert torch.equal(result.system.net.W, result.system.net.W.T)  # symmetric: true
    assert result.system.data is system.data
    assert result.stop_reason == "max_steps" and result.steps_run == 1500


def test_stability_penalty_is_the_spectral_abscissa_of_the_jacobian() -> None:
    """For symmetric W the penalty's λ_max(Λ^½WΛ^½) − 1 is max Re λ(WΛ − I), computed here by a general
    eigensolver at the patterns' fixed points."""
    system = compose(**{**MEMORY, "activation": "tanh", "weights_params": {"sigma": 3.0}, "dataset": "gaussian",
                        "dataset_params": {}})
    net = Network(system.net.W, system.net.b, system.net.lagrangian)
    X = 0.5 * torch.tanh(system.data.patterns.to(DEVICE, F64))
    margin = 0.05
    penalty = stability_penalty(net, X, margin)
    h = X @ net.W.T + net.b
    lam = net.lagrangian.hessian(h).values
    J = net.W.unsqueeze(0) * lam.unsqueeze(-2) - torch.eye(30, dtype=F64, device=DEVICE)
    abscissa = torch.linalg.eigvals(J).real.amax(-1)
    expected = torch.relu(abscissa + margin).pow(2).mean()
    torch.testing.assert_close(penalty, expected, rtol=1e-9, atol=1e-12)
    assert float(expected) > 0  # the test must exercise a non-zero penalty


def test_stability_penalty_trains_the_stored_points_stable() -> None:
    """From a W under which the stored points are unstable, the penalised objective moves the patterns towards
    steady states of eq. 1 whose Jacobian (general eigensolver) has max Re λ < 0."""
    system = compose(**{**MEMORY, "weights_params": {"sigma": 3.0}})
    X = system.data.patterns.to(DEVICE, F64)
    cfg = TrainConfig(steps=1500, lr=0.02, stability_weight=10.0, margin=0.1, log_every=100, validate_every=1500,
                      grad_clip=0.0, **PLAIN)
    result = train(system, cfg, cue=FLIP, solver=SolverConfig(t_max=20.0))
    model = result.system.model
    y, y0 = model.initial_state(X), system.model.initial_state(X)
    assert float(model.residual(y).abs().amax()) < 0.2 * float(system.model.residual(y0).abs().amax())
    assert float(torch.linalg.eigvals(system.model.jacobian(y0)).real.amax()) > 0  # unstable before
    assert float(torch.linalg.eigvals(model.jacobian(y)).real.amax()) < 0
    assert result.history[0]["stability_penalty"] > 0.1 and result.history[-1]["stability_penalty"] < 1e-4


def test_cross_entropy_is_the_bce_of_the_output_read_as_a_probability() -> None:
    """tanh (gain β) with ±1 patterns: p = (1 + g(h))/2; sigmoid with {0,1} patterns: p = g(h) — the binary
    cross-entropy −[t log p + (1 − t) log(1 − p)] written out, at fields where p is not saturated."""
    h = torch.linspace(-0.6, 0.6, 24, dtype=F64).reshape(2, 12)
    for activation, dataset, to_target in (("tanh", "random_binary", lambda x: (1 + x) / 2),
                                           ("sigmoid", "sparse_binary", lambda x: x)):
        system = compose(activation=activation, activation_params={"beta": 3.0}, dataset=dataset, n_neurons=12,
                         n_patterns=2, device="cpu", dtype="float64")
        lag, target = system.net.lagrangian, system.data.patterns
        p = (1 + lag.activation(h)) / 2 if activation == "tanh" else lag.activation(h)
        t = to_target(target)
        expected = -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()
        loss = data_loss("auto", lag, system.data)(h, target)
        torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    mse = data_loss("auto", build_activation("relu"), system.data)
    torch.testing.assert_close(mse(h, target), (torch.relu(h) - target).pow(2).mean())  # auto: mse elsewhere


def test_saturated_wrong_units_keep_their_gradient_under_cross_entropy() -> None:
    """Why cross_entropy is the default for tanh and ±1 patterns: a unit saturated at the wrong sign has a
    vanishing MSE gradient but a cross-entropy gradient of about 2β/N."""
    system = compose(activation="tanh", activation_params={"beta": 4.0}, n_neurons=8, n_patterns=1, device="cpu",
                     dtype="float64")
    target = system.data.patterns
    h = (-3.0 * target).requires_grad_(True)  # every unit at the wrong sign, tanh(−12) ≈ −1
    grads = {name: torch.autograd.grad(data_loss(name, system.net.lagrangian, system.data)(h, target), h)[0]
             for name in ("mse", "cross_entropy")}
    assert float(grads["mse"].abs().max()) < 1e-8
    torch.testing.assert_close(grads["cross_entropy"].abs(), torch.full_like(h, 2 * 4.0 / 8), rtol=1e-6, atol=0)


@pytest.mark.parametrize(("model", "strategy"), [("original", "identity"), ("modified", "i_minus_wt_lambda"),
                                                 ("modified_y", "y_i_minus_lambda_wt")])
def test_denoise_adjoint_gradient_equals_backprop_through_the_solver(model: str, strategy: str) -> None:
    """Two independent routes to dL/dW for the end-to-end objective of every model: backpropagation through
    torchdiffeq's steps and the adjoint ODE."""
    system = compose(model=model, strategy=strategy, activation="tanh", activation_params={"beta": 2.0},
                     n_neurons=12, n_patterns=2, seed=1, device=str(DEVICE), dtype="float64")
    grads = []
    for adjoint in (False, True):
        W = system.net.W.clone().requires_grad_(True)
        net = Network(W, system.net.b, system.net.lagrangian)
        cfg = TrainConfig(objective="denoise", horizon=2.0, method="dopri5", adjoint=adjoint, cues_per_pattern=3)
        problem = TrainingProblem.build(system, cfg, cue=Flip(level=0.2))
        (grad,) = torch.autograd.grad(denoise_loss(problem, net)["loss"], W)
        grads.append(grad)
    scale = float(grads[0].abs().max())
    assert scale > 1e-4
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-4 * scale)  # the solvers' rtol is 1e-5


def test_fixed_point_objective_is_the_loss_at_the_patterns_for_every_model() -> None:
    """The u-state model's fixed-point loss is the same function of W as the y-state one (h = Wξ + b)."""
    losses = []
    for model, strategy in (("original", "identity"), ("modified", "i_minus_wt_lambda")):
        system = bipolar_memory(12, 3, weights="hebbian", model=model, strategy=strategy)
        problem = TrainingProblem.build(system, TrainConfig(), cue=FLIP)
        losses.append(fixed_point_loss(problem, system.net)["loss"])
        X = system.patterns
        h = X @ system.net.W.T
        expected = torch.nn.functional.softplus(-8.0 * X * h).mean()  # BCE of σ(2βh) with (1 + ξ)/2
        torch.testing.assert_close(losses[-1], expected)
    assert float(losses[0]) > 0


def test_training_beats_the_storage_rule_on_held_out_cues() -> None:
    """Above the pseudo-inverse rule's reach (20 neurons, 10 random ±1 patterns, 10 % flipped bits), denoising
    training from it retrieves the evaluation's cues — a stream neither trained nor validated on — far better."""
    system = bipolar_memory(20, 10)
    solver = SolverConfig()
    before = retrieval(system, system.model, FLIP, solver, n_cues=8, threshold=0.95).scalars["retrieval_accuracy"]
    cfg = TrainConfig(objective="denoise", steps=100, lr=0.02, validate_every=25, method="rk4")
    result = train(system, cfg, cue=FLIP)
    trained = result.system
    after = retrieval(trained, trained.model, FLIP, solver, n_cues=8, threshold=0.95).scalars["retrieval_accuracy"]
    assert before < 0.6 and after > before + 0.25, (before, after)
    assert result.best["val_accuracy"] > result.history[0]["val_accuracy"]


def test_validation_is_the_retrieval_of_held_out_cues() -> None:
    """val_accuracy at step 0 is the storage rule's retrieval of the stream "validation cues", computed here by
    plain integration to t = 200; those cues are neither the training cues nor the evaluation's cues."""
    system = bipolar_memory(20, 10)
    cfg = TrainConfig(objective="denoise", steps=1, val_cues_per_pattern=5)
    result = train(system, cfg, cue=FLIP)
    X = system.data.patterns
    targets = X.repeat(5, 1)
    cues = FLIP.apply(targets, "bipolar", generator(system.seed, "validation cues"))
    model = system.model
    span = torch.tensor([0.0, 200.0], dtype=F64)
    y0 = model.initial_state(cues.to(system.device))
    yT = odeint(lambda t, y: model.vector_field(y), y0, span.to(system.device), rtol=1e-8, atol=1e-9)[-1]
    expected = float((cosine(model.readout(yT).cpu(), targets) >= 0.95).double().mean())
    assert result.history[0]["val_accuracy"] == pytest.approx(expected, abs=1.5 / len(targets))
    assert 0 < expected < 1  # the check must be able to tell
    training = FLIP.apply(targets[: 4 * 10], "bipolar", generator(system.seed, "training cues"))
    evaluation = FLIP.apply(X.repeat_interleave(5, 0), "bipolar", generator(system.seed, "cues"))
    assert not torch.equal(cues[: 4 * 10], training) and not torch.equal(cues, evaluation)


def test_early_stopping_keeps_the_best_weights() -> None:
    """A learning rate too small to change anything: the validation never improves, training stops after
    ``patience`` validations and returns the weights of step 0 (the storage rule)."""
    system = bipolar_memory(24, 6)
    cfg = TrainConfig(objective="fixed_point", steps=500, lr=1e-9, lr_min=0.0, schedule="constant",
                      validate_every=5, patience=3, warmup_steps=0)
    result = train(system, cfg, cue=FLIP)
    assert result.stop_reason == "early_stopping" and result.steps_run == 15 and result.best_step == 0
    assert [r["step"] for r in result.history if "val_accuracy" in r] == [0, 5, 10, 15]
    torch.testing.assert_close(result.system.net.W, system.net.W, rtol=0, atol=1e-14)  # W = (A + Aᵀ)/2 of A = W
    assert torch.equal(result.system.net.b, system.net.b)


def test_kept_weights_are_those_of_the_best_validation() -> None:
    """keep_best returns the weights seen at the best validation (captured by the probe), which has the
    highest held-out accuracy of all validations; keep_best=false returns the last weights."""
    seen: list[torch.Tensor] = []

    def probe(system) -> dict:
        seen.append(system.net.W.clone())
        return {"probe_norm": float(system.net.W.norm())}

    system = bipolar_memory(20, 10)
    cfg = TrainConfig(objective="denoise", steps=60, lr=0.02, validate_every=10, patience=0, method="rk4")
    result = train(system, cfg, cue=FLIP, probe=probe)
    rows = [r for r in result.history if "val_accuracy" in r]
    assert len(rows) == len(seen) == 7 and all("probe_norm" in r for r in rows)
    best = max(r["val_accuracy"] for r in rows)
    assert result.best["val_accuracy"] == best and result.best_step > 0
    assert torch.equal(result.system.net.W, seen[[r["step"] for r in rows].index(result.best_step)])
    # the same training (validations draw on their own stream), keeping the last weights: those of step 60
    last = train(system, TrainConfig(**{**cfg.__dict__, "keep_best": False, "validate_every": 60}), cue=FLIP)
    assert torch.equal(last.system.net.W, seen[-1]) and result.best_step < 60


def test_plateau_schedule_lowers_the_rate_after_stale_validations() -> None:
    """plateau: lr × lr_factor after lr_patience validations without improvement (never below lr_min); the
    rates of the history follow that rule from its own 'best' flags."""
    system = bipolar_memory(24, 6)
    cfg = TrainConfig(objective="fixed_point", steps=80, lr=1e-6, lr_min=1e-7, schedule="plateau", lr_factor=0.5,
                      lr_patience=2, validate_every=5, patience=0, warmup_steps=0)
    result = train(system, cfg, cue=FLIP)
    lr, stale, lowered = cfg.lr, 0, 0
    for row in result.history:
        assert row["lr"] == pytest.approx(lr, rel=1e-12), row["step"]
        if "best" in row:
            stale = 0 if row["best"] else stale + 1
            if stale >= cfg.lr_patience:
                lr, stale, lowered = max(cfg.lr_min, lr * cfg.lr_factor), 0, lowered + 1
    assert lowered >= 3 and result.history[-1]["lr"] == pytest.approx(cfg.lr_min)


def test_warmup_then_cosine_schedule_and_recorded_gradient_norm() -> None:
    """A linear warm-up to lr over warmup_steps, then cosine down to lr_min at the last step; grad_norm is the
    norm of the loss's gradient with respect to (A, b) before clipping (autograd here, at the initial weights)."""
    system = bipolar_memory(24, 6, weights="hebbian")
    cfg = TrainConfig(objective="fixed_point", steps=49, lr=0.01, lr_min=1e-4, grad_clip=0.01, patience=0,
                      log_every=1, warmup_steps=9)
    result = train(system, cfg, cue=FLIP)
    lrs = [r["lr"] for r in result.history]
    assert lrs[:10] == pytest.approx([0.001 * (t + 1) for t in range(10)], rel=1e-12)
    assert lrs[-1] == pytest.approx(1e-4) and all(b <= a for a, b in itertools.pairwise(lrs[9:]))
    assert lrs[29] == pytest.approx(1e-4 + 0.5 * (0.01 - 1e-4), rel=1e-9)  # half way from step 9 to step 49
    for steps in (4, 5, 6):  # a warm-up as long as the run, or longer, ramps all the way
        short = train(system, TrainConfig(**{**cfg.__dict__, "steps": steps, "warmup_steps": 5}), cue=FLIP)
        assert [r["lr"] for r in short.history][:5] == pytest.approx([0.01 * (t + 1) / 6 for t in range(5)])
        assert short.stop_reason == "max_steps" and short.steps_run == steps
    A = system.net.W.clone().requires_grad_(True)
    b = system.net.b.clone().requires_grad_(True)
    problem = TrainingProblem.build(system, cfg, cue=FLIP)
    loss = fixed_point_loss(problem, Network(0.5 * (A + A.T), b, system.net.lagrangian))["loss"]
    norm = torch.cat([g.flatten() for g in torch.autograd.grad(loss, (A, b))]).norm()
    assert result.history[0]["grad_norm"] == pytest.approx(float(norm), rel=1e-9)
    assert float(norm) > 0.01  # the clip was active


@pytest.mark.parametrize(("model", "strategy"), [("modified", "i_minus_wt_lambda"),
                                                 ("modified_y", "y_i_minus_lambda_wt")])
def test_training_works_for_the_modified_models(model: str, strategy: str) -> None:
    """Eq. 9 and eq. 13 with their natural strategies: the fixed-point objective makes every pattern a steady state
    (the model's own residual — u-state for eq. 9 — falls 100-fold), and a few denoising steps through the
    model (adaptive dopri5: R = I − WᵀΛ makes eq. 9 stiff) run with finite losses; the trained system keeps the
    model and its strategy."""
    system = compose(**{**MEMORY, "model": model, "strategy": strategy})
    X = system.data.patterns.to(DEVICE, F64)
    before = system.model.residual(system.model.initial_state(X)).abs().amax()
    cfg = TrainConfig(steps=1500, lr=0.02, log_every=500, validate_every=1500, grad_clip=0.0, **PLAIN)
    result = train(system, cfg, cue=FLIP, solver=SolverConfig(t_max=50.0))
    trained = result.system.model
    assert trained.name == model and trained.strategy.name == strategy
    assert float(trained.residual(trained.initial_state(X)).abs().amax()) < 0.01 * float(before)
    bipolar = bipolar_memory(16, 5, model=model, strategy=strategy)
    cfg = TrainConfig(objective="denoise", steps=4, validate_every=2, log_every=1)
    result = train(bipolar, cfg, cue=FLIP, solver=SolverConfig(t_max=50.0))
    assert [r["step"] for r in result.history] == [0, 1, 2, 3, 4] and result.stop_reason == "max_steps"
    assert all(math.isfinite(r["loss"]) for r in result.history)
    assert not torch.equal(result.system.net.W, bipolar.net.W) or result.best_step == 0


def test_non_finite_loss_stops_and_keeps_the_last_good_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def flaky(problem, net):
        calls.append(1)
        fit = fixed_point_loss(problem, net)["loss"]
        return {"loss": fit if len(calls) < 4 else fit * math.nan}

    monkeypatch.setitem(OBJECTIVES._entries, "flaky", flaky)
    system = bipolar_memory(24, 6)
    result = train(system, TrainConfig(objective="flaky", steps=50, validate_every=2), cue=FLIP)
    assert result.stop_reason == "non_finite_loss" and result.steps_run == 3
    assert math.isnan(result.history[-1]["loss"]) and result.best_step in (0, 2)
    with pytest.raises(FloatingPointError, match="initial weights"):
        calls.extend([1] * 10)
        train(system, TrainConfig(objective="flaky"), cue=FLIP)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("objective", "foo", r"unknown option \(allowed: denoise, fixed_point\)"),
    ("steps", 0, "must be an integer ≥ 1"),
    ("lr", -1, "must be a number > 0"),
    ("loss", "hinge", r"unknown option \(allowed: auto, cross_entropy, mse\)"),
    ("schedule", "step", r"unknown option \(allowed: constant, cosine, plateau\)"),
    ("monitor", "f1", r"unknown option \(allowed: accuracy, loss\)"),
    ("method", "leapfrog", "unknown option"),
    ("step_size", 0.0, "must be a number > 0"),
    ("lr_min", 1.0, r"must be a number in \[0, 0.01\]"),
    ("lr_factor", 1.5, r"must be a number in \(0, 1\)"),
    ("lr_patience", 0, "must be an integer ≥ 1"),
    ("grad_clip", -1.0, "must be a number ≥ 0"),
    ("validate_every", 2.5, "must be an integer ≥ 1"),
    ("val_cues_per_pattern", 0, "must be an integer ≥ 1"),
    ("patience", -1, "must be an integer ≥ 0"),
    ("warmup_steps", -2, "must be an integer ≥ 0"),
    ("min_delta", float("nan"), "must be a number ≥ 0"),
    ("keep_best", "yes", r"must be a boolean \(allowed: false, true\)"),
])
def test_bad_training_settings_name_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^task\.{key}=.*: {message}") as error:
        TrainConfig(**{key: value})
    assert "\n" not in str(error.value)


def test_cross_entropy_where_it_does_not_apply_names_task_loss() -> None:
    system = compose(activation="relu", n_neurons=12, n_patterns=2, device="cpu", dtype="float64")
    with pytest.raises(ConfigError, match=r"^task\.loss='cross_entropy': needs tanh with ±1 patterns"):
        train(system, TrainConfig(loss="cross_entropy"), cue=FLIP)


def test_train_task_logs_curves_against_the_training_step(offline_wandb: Path) -> None:
    """wandb offline: train/step is declared the x-axis of train/*, every history row reaches the run with its
    step, validation accuracy and stability fractions; the trained weights travel in the run's results artifact
    (no second artifact for them)."""
    out = offline_wandb / "job"
    result = run_inprocess(["task=train", "task.objective=denoise", "logger=wandb", "n_neurons=20", "load=0.2",
                            "task.steps=12", "task.validate_every=4", "task.log_every=4", "spurious.n_states=8",
                            "lyapunov.n_states=10", "retrieval.n_cues=2"], out)
    assert result["status"] == "ok", result.get("error")
    history = pd.read_parquet(out / "training.parquet")
    assert history["step"].tolist() == [0, 4, 8, 12]
    assert {"val_accuracy", "val_loss", "lr", "original_dead_fraction",
            "original_energy_inconclusive_fraction"} <= set(history)
    assert result["metrics"]["train_stop_reason"] == "max_steps"
    assert result["metrics"]["val_accuracy_best"] == history.loc[history["best"], "val_accuracy"].iloc[-1]
    assert {"training_loss.png", "training_dead_neurons.png"} <= set(result["figures"])
    records = wandb_records(next(out.rglob("run-*.wandb")))
    metrics = {r.metric.name or r.metric.glob_name: r.metric.step_metric for r in records
               if r.WhichOneof("record_type") == "metric"}
    assert metrics.get("train/*") == "train/step"
    logged = [{i.key or "/".join(i.nested_key): i.value_json for i in r.history.item} for r in records
              if r.WhichOneof("record_type") == "history"]
    curves = [h for h in logged if "train/step" in h]
    assert [int(h["train/step"]) for h in curves] == history["step"].tolist()
    assert [float(h["train/val_accuracy"]) for h in curves] == history["val_accuracy"].tolist()
    artifacts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"
                 and r.artifact.type != "run_table"]
    assert [a.type for a in artifacts] == ["results"]
    assert "trained_weights.npz" in {e.path for e in artifacts[0].manifest.contents}
    assert np.load(out / "trained_weights.npz")["W"].shape == (20, 20)
