"""One source of truth: every option of every group is a typed config that composes and instantiates, and the
Python API (hopbench.compose) builds exactly what the command line builds from the same names."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from hopbench import compose
from hopbench.analysis.metrics import retrieval
from hopbench.app.compose import compose_config, compose_spec, job_from_config, system_spec
from hopbench.app.configs import GROUPS, SOLVER_PRESETS, option_names
from hopbench.core.activations import Tanh
from hopbench.core.weights import Pseudoinverse
from tests.conftest import compose_hydra, run_inprocess

#: what an option needs beside it to form a valid composition
COMPANIONS = {
    ("dataset", "digits"): {"n_neurons": 64},
    ("dataset", "lognormal"): {"cue": "gaussian"},
    ("dataset", "gaussian"): {"cue": "gaussian"},
    ("energy", "eq14"): {"model": "modified_y"},
    ("energy", "e1"): {"model": "modified"},
    ("energy", "e2"): {"model": "modified"},
    ("energy", "e3"): {"model": "modified"},
    ("energy", "combined"): {"model": "modified"},
    ("strategy", "y_i_minus_w_lambda"): {"model": "modified_y"},
    ("strategy", "y_i_minus_lambda_wt"): {"model": "modified_y"},
    ("task", "train"): {"weights": "hebbian"},
}


def every_option() -> list[tuple[str, str]]:
    return [(g, o) for g in [*GROUPS, "solver"] for o in option_names(g)]


def options_for(group: str, option: str, npz: Path) -> dict:
    out = {group: option, **COMPANIONS.get((group, option), {})}
    if group == "strategy" and option not in ("auto", "identity") and "model" not in out:
        out["model"] = "modified"
    if (group, option) == ("dataset", "npz"):
        out["dataset_params"] = {"path": str(npz), "kind": "bipolar"}
    return out


def as_overrides(options: dict) -> list[str]:
    out = []
    for key, value in options.items():
        if key.endswith("_params"):
            out += [f"{key[:-7]}.{k}={v}" for k, v in value.items()]
        else:
            out.append(f"{key}={value}")
    return out


@pytest.fixture
def npz_file(tmp_path: Path) -> Path:
    path = tmp_path / "patterns.npz"
    np.savez(path, patterns=np.random.default_rng(0).choice([-1.0, 1.0], size=(40, 100)))
    return path


@pytest.mark.parametrize(("group", "option"), every_option())
def test_every_option_composes_instantiates_and_equals_the_command_line(group: str, option: str,
                                                                        npz_file: Path) -> None:
    """compose_config(names) is the config `hopbench <overrides>` composes, and it instantiates into a checked Job
    whose parts are the chosen options."""
    options = options_for(group, option, npz_file)
    python = compose_config(**options)
    cli = compose_hydra(as_overrides(options))
    assert OmegaConf.to_container(python, resolve=True) == OmegaConf.to_container(cli, resolve=True)
    job = job_from_config(python, explicit=set(options))
    chosen = {"model": job.system.model.name, "activation": job.system.activation.name,
              "weights": job.system.weights.name, "dataset": job.system.dataset.name, "cue": job.cue.name,
              "task": job.task.name, "logger": job.logger.name, "solver": job.solver.method,
              "strategy": "auto" if job.system.strategy is None else job.system.strategy.name,
              "energy": "auto" if job.system.energy is None else job.system.energy.name}
    assert chosen[group] == option


def test_no_yaml_repeats_a_typed_option() -> None:
    """The options of the registry-backed groups exist only as typed configs (no YAML twin to drift apart)."""
    conf = Path(__file__).resolve().parent.parent / "conf"
    for group in [*GROUPS, "solver"]:
        twins = [p.name for p in (conf / group).glob("*.yaml")] if (conf / group).is_dir() else []
        assert twins == [] or (group == "task" and twins == ["reproduce.yaml"]), (group, twins)


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_config_defaults_are_the_constructor_defaults(group: str) -> None:
    """Every default of a typed config is the default of its option's constructor (one set of defaults)."""
    for option in GROUPS[group].names():
        node = compose_hydra([f"{group}={option}", *(["model=modified"] if group == "energy" else [])])[group]
        cls = GROUPS[group].get(option)
        if dataclasses.is_dataclass(cls):
            defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                        for f in dataclasses.fields(cls)
                        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
        else:
            defaults = {name: p.default for name, p in inspect.signature(cls).parameters.items()
                        if p.default is not inspect.Parameter.empty}
        assert {name: OmegaConf.to_container(node)[name] for name in defaults} == defaults


def test_solver_presets_only_set_their_method_and_step() -> None:
    for name, preset in SOLVER_PRESETS.items():
        node = compose_hydra([f"solver={name}"]).solver
        for key, value in preset.items():
            assert node[key] == value


def test_same_names_same_system_in_python_and_on_the_command_line() -> None:
    """The review's case: compose(model=modified, activation=tanh) gave strategy identity, E1 and β = 1 while the
    command line gave I − WᵀΛ, E3 and β = 4. Now both are the latter."""
    system = compose(model="modified", activation="tanh", n_neurons=40, dtype="float64")
    assert system.model.strategy.name == "i_minus_wt_lambda" and system.model.energy.name == "e3"
    assert system.net.lagrangian.beta == 4.0
    cfg = compose_hydra(["model=modified", "activation=tanh", "n_neurons=40", "dtype=float64"])
    job = job_from_config(cfg)
    assert job.system.model_spec.strategy.name == "i_minus_wt_lambda"
    assert job.system.activation.beta == 4.0


def test_objects_replace_names() -> None:
    system = compose(activation=Tanh(beta=2.0), weights=Pseudoinverse(scale=1.5), n_neurons=30, n_patterns=3,
                     dtype="float64")
    assert system.net.lagrangian.beta == 2.0
    X = system.data.patterns.T
    torch.testing.assert_close(system.net.W, 1.5 * X @ torch.linalg.pinv(X))


@pytest.mark.parametrize(("model", "activation"), [("original", "tanh"), ("modified", "tanh"),
                                                    ("modified_y", "sigmoid"), ("modified", "relu")])
def test_compose_and_the_command_line_measure_the_same(model: str, activation: str, tmp_path: Path) -> None:
    """The same names give the same retrieval metrics in a notebook and in a run."""
    names = {"model": model, "activation": activation, "n_neurons": 30, "seed": 3}
    results = run_inprocess([*as_overrides(names), "logger=none", "task.spurious=false", "task.stability=false",
                             "task.lyapunov=false", "retrieval.n_cues=3"], tmp_path)
    assert results["status"] == "ok"
    job = job_from_config(compose_config(**names, retrieval={"n_cues": 3}), explicit=set(names))
    with job.thread_budget():  # the run's thread count: the same summation order, the same float32 rounding
        system = compose(**names)
        m = retrieval(system, system.model, job.cue, job.solver, n_cues=3, threshold=job.retrieval.threshold)
    for key in ("retrieval_accuracy", "mean_overlap", "converged_fraction"):
        assert m.scalars[key] == pytest.approx(results["metrics"][key], rel=1e-6, abs=1e-9)
    assert results["choices"]["strategy"] == system.model.strategy.name


def _state(obj: object) -> object:
    """An option object's class and parameters, comparable with ==."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, list | tuple):
        return [_state(v) for v in obj]
    if not hasattr(obj, "__dict__"):
        return obj
    return type(obj).__name__, {k: _state(v) for k, v in vars(obj).items()}


@pytest.mark.parametrize(("group", "option"), [(g, o) for g, o in every_option()
                                               if g in ("model", "activation", "strategy", "energy", "weights",
                                                        "dataset")])
def test_compose_without_hydra_builds_what_hydra_composes(group: str, option: str, npz_file: Path) -> None:
    """compose()'s direct path (registries and constructor defaults) gives the same SystemSpec as the command line's
    composition (Hydra, typed configs), option by option."""
    options = {k: v for k, v in options_for(group, option, npz_file).items() if k not in ("cue", "task")}
    direct = compose_spec(**options)
    via_hydra = system_spec(compose_hydra(as_overrides(options)), explicit=set(options))
    for field in dataclasses.fields(direct):
        assert _state(getattr(direct, field.name)) == _state(getattr(via_hydra, field.name)), field.name


def test_device_auto_keeps_small_systems_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """device=auto puts a system on CUDA (where available) from AUTO_CUDA_NEURONS neurons on and on the CPU below;
    the system's own size decides, explicit devices are kept. Runs without a GPU: availability is faked and no
    tensor is placed (the specs are only resolved, not built)."""
    from hopbench.core.system import AUTO_CUDA_NEURONS, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    small = compose_spec(n_neurons=AUTO_CUDA_NEURONS - 1, n_patterns=4, device="auto")
    large = compose_spec(n_neurons=AUTO_CUDA_NEURONS, n_patterns=4, device="auto")
    assert small.torch_device.type == "cpu" and large.torch_device.type == "cuda"
    assert compose_spec(n_neurons=8, n_patterns=2, device="cuda").torch_device.type == "cuda"
    assert resolve_device("auto").type == "cuda" and resolve_device("cpu", 10 * AUTO_CUDA_NEURONS).type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert large.torch_device.type == "cpu"
