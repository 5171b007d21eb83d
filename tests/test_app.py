"""The application: every config composes, bad input is one line, runs write complete results, sweeps go on
after a failing job, the report aggregates, wandb offline runs carry the right group and job type."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hopbench.app.settings import settings_from_config
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from hopbench.app.cli import CONF_DIR, GROUPS, preflight
from hopbench.app.tracking import atomic_path, json_safe, write_json
from hopbench.errors import ConfigError

HOPBENCH = [sys.executable, "-m", "hopbench.app.cli"]
REQUIRED_RESULT_KEYS = {"config", "config_hash", "task", "status", "metrics", "theory_backed", "timing", "device",
                        "versions", "system", "models", "tables", "figures"}

#: what each option needs beside it to form a valid run
COMPANIONS = {
    ("dataset", "digits"): ["n_neurons=64"],
    ("dataset", "lognormal"): ["cue=gaussian"],
    ("dataset", "gaussian"): ["cue=gaussian"],
    ("energy", "eq14"): ["model=modified_y"],
    ("energy", "e1"): ["model=modified"],
    ("energy", "e2"): ["model=modified"],
    ("energy", "e3"): ["model=modified"],
    ("energy", "combined"): ["model=modified"],
    ("strategy", "y_i_minus_w_lambda"): ["model=modified_y"],
    ("strategy", "y_i_minus_lambda_wt"): ["model=modified_y"],
}


@pytest.fixture
def npz_file(tmp_path: Path) -> Path:
    path = tmp_path / "patterns.npz"
    np.savez(path, patterns=np.random.default_rng(0).choice([-1.0, 1.0], size=(40, 100)))
    return path


def compose_cfg(overrides: list[str], hydra_node: bool = False):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=hydra_node)


def every_option() -> list[tuple[str, str]]:
    return [(g, p.stem) for g in GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))]


@pytest.mark.parametrize(("group", "option"), every_option())
def test_every_config_composes_and_validates(group: str, option: str, npz_file: Path) -> None:
    overrides = [f"{group}={option}", *COMPANIONS.get((group, option), [])]
    if group == "strategy" and option not in ("auto", "identity") and not overrides[1:]:
        overrides.append("model=modified")
    if (group, option) == ("dataset", "npz"):
        overrides += [f"dataset.path={npz_file}", "dataset.kind=bipolar"]
    if group == "experiment":
        overrides.append("logger=none")
    settings = settings_from_config(compose_cfg(overrides), explicit={o.split("=")[0] for o in overrides})
    assert settings.n_neurons > 0


BAD_INPUTS = [
    (["activation=foo"], r"^activation='foo': unknown option \(allowed: gelu, .*tanh, threshold_linear\)$"),
    (["n_neurons=0"], r"^n_neurons=0: must be a positive integer$"),
    (["n_neurons=-3"], r"^n_neurons=-3: must be a positive integer$"),
    (["load=0"], r"^load=0(\.0)?: must be > 0$"),
    (["load=-0.1"], r"^load=-0\.1: must be > 0$"),
    (["weights=pseudoinverse", "n_patterns=150"], r"^n_patterns=150: weights=pseudoinverse stores at most N = 100"),
    (["dataset=npz", "dataset.path=/no/such/file.npz"], r"^dataset\.path='/no/such/file\.npz': no such \.npz file$"),
    (["foo=1"], r"^foo='1': unknown config key .*\(allowed: activation, bias, compare, .*weights\)$"),
    (["activation.gain=2"],
     r"^activation\.gain=.2.: unknown config key for activation=tanh .*\(allowed: beta, name\)$"),
    (["n_patterns=10", "load=0.2"], r"^n_patterns=10: give n_patterns or load, not both"),
    (["-m", "model=original,bogus"], r"^model='bogus': unknown option \(allowed: modified, modified_y, original\)$"),
    (["model=original,modified"], r"a sweep needs --multirun"),
    (["model=modified", "energy=eq4"], r"^energy='eq4': is a function of the y-state; model=modified has a u-state"),
    (["dataset=lognormal"], r"^cue='flip': needs binary patterns"),
    (["dataset=digits"], r"^n_neurons=100: dataset=digits has 64 features"),
    (["solver=dopri5", "solver.method=rk45"], r"unknown config key for solver=dopri5"),
    (["task=critical_load", "task.loads=[0.5,-1]"], r"^task\.loads=-1: must be a positive number$"),
    (["device=tpu"], r"^device='tpu': unknown device \(allowed: auto, cpu, cuda\)$"),
    (["task=train", "task.objective=foo"], r"^task\.objective=.foo.: unknown option \(allowed: denoise, fixed_point\)"),
    (["task=train", "weights=bipartite"], r"^weights='bipartite': task=train needs every neuron to carry the patterns"),
    (["task=train", "task.epochs=3"], r"^task\.epochs=.3.: unknown config key for task=train .*\(allowed: adjoint, "),
    (["solver.backend=scipy"], r"^solver\.backend='scipy': unknown backend \(allowed: auto, rows, torchdiffeq\)$"),
    (["solver=rk4", "solver.backend=rows"], r"^solver\.method='rk4': not available with solver\.backend=rows"),
]


@pytest.mark.parametrize(("args", "pattern"), BAD_INPUTS)
def test_bad_input_is_one_line_naming_key_and_allowed(args: list[str], pattern: str) -> None:
    with pytest.raises(ConfigError) as info:
        preflight(args)
    message = str(info.value)
    assert "\n" not in message
    assert __import__("re").search(pattern, message), message


def test_a_whole_sweep_is_validated_before_any_job(tmp_path: Path) -> None:
    assert preflight(["-m", "model=original,modified", "activation=relu,tanh", "logger=none"]) == 4
    with pytest.raises(ConfigError, match=r"n_neurons=-1"):
        preflight(["-m", "n_neurons=20,-1", "logger=none"])


def run(args: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore", **(env or {})}
    proc = subprocess.run([*HOPBENCH, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_bad_input_exits_nonzero_before_compute(tmp_path: Path) -> None:
    proc = run(["n_neurons=0"], tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "hopbench: error: n_neurons=0: must be a positive integer"
    assert not (tmp_path / "outputs").exists()


def results_in(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("results.json"))]


def test_issue_commands_write_complete_results(tmp_path: Path) -> None:
    common = ["task=evaluate", "logger=none", "n_neurons=24", "spurious.n_states=20", "lyapunov.n_states=30",
              "retrieval.n_cues=3"]
    run([*common, "model=modified", "strategy=i_minus_wt_lambda", "weights=hierarchical",
         "activation=smooth_leaky_relu"], tmp_path)
    run([*common, "model=original", "strategy=i_minus_wt_lambda", "weights=hebbian", "activation=relu"], tmp_path)
    results = results_in(tmp_path / "outputs")
    assert len(results) == 2
    for r in results:
        assert r["status"] == "ok", r.get("error")
        assert set(r) >= REQUIRED_RESULT_KEYS
        metrics = r["metrics"]
        for key in ("retrieval_accuracy", "nearest_accuracy", "mean_overlap", "spurious_rate",
                    "n_spurious_attractors", "stored_fraction", "stable_fraction", "energy_certified_fraction",
                    "energy_inconclusive_fraction", "energy_unstable_fraction", "energy_jacobian_agreement",
                    "dead_fraction", "lyapunov_violation_fraction", "lyapunov_max_relative_violation",
                    "trajectory_energy_increase_fraction", "converged_fraction", "status_counts",
                    "retrieval_stall_fraction", "random_stall_fraction", "random_trivial_fraction",
                    "retrieval_end_state_counts", "random_end_state_counts", "lyapunov_end_state_counts"):
            assert key in metrics, key
        assert sum(metrics["status_counts"].values()) == 3 * max(1, round(0.05 * 24))  # every cue counted
        assert sum(metrics["retrieval_end_state_counts"].values()) == sum(metrics["status_counts"].values())
        assert sum(metrics["random_end_state_counts"].values()) == 20  # every random start has a class
        assert {"retrieval.parquet", "spurious.parquet", "stability.parquet", "lyapunov.parquet"} <= set(r["tables"])
        for name in r["tables"] + r["figures"]:
            assert (Path(next(tmp_path.rglob(name))).stat().st_size > 0)
    by_model = {r["config"]["model"]["name"]: r for r in results}
    hierarchical, original = by_model["modified"], by_model["original"]
    assert hierarchical["models"]["modified"]["strategy"] == "i_minus_wt_lambda"
    assert "range_certified_fraction" in original["metrics"]
    assert original["models"]["original"]["strategy"] == "identity"
    assert any("does not apply to model=original" in n for n in original["notes"])
    table = pd.read_parquet(next(tmp_path.rglob("retrieval.parquet")))
    assert {"model", "pattern", "status", "overlap", "success", "end_state", "polish_residual"} <= set(table.columns)
    starts = pd.read_parquet(next(tmp_path.rglob("spurious.parquet")))
    assert {"end_state", "residual", "polish_residual", "attractor"} <= set(starts.columns)


def test_demo_shows_dead_neurons_that_eq4_cannot_certify_and_e3_can() -> None:
    """experiment=demo (make demo): the original retrieves, its stored fixed points have dead neurons and eq. 4 is
    inconclusive at some of them; E3 is inconclusive at none of the modified model's."""
    from hopbench.analysis.metrics import retrieval, stability_at_patterns
    from hopbench.core.system import compose as compose_system

    settings = settings_from_config(compose_cfg(["experiment=demo", "logger=none"]), explicit={"experiment"})
    assert settings.models() == ["original", "modified"]
    found = {}
    for name in settings.models():
        system = compose_system(model=name, **settings.system, **settings.model_kwargs(name))
        stab = stability_at_patterns(system, system.model, settings.solver, settings.stability,
                                     max_points=settings.max_points, threshold=settings.retrieval["threshold"])
        ret = retrieval(system, system.model, settings.cue, settings.solver, n_cues=2,
                        threshold=settings.retrieval["threshold"])
        found[name] = {**stab.scalars, **ret.scalars}
    original, modified = found["original"], found["modified"]
    assert original["retrieval_retrieved_fraction"] >= 0.9 and original["stable_fraction"] == 1.0
    assert original["dead_fraction"] > 0 and original["energy_inconclusive_fraction"] > 0
    assert modified["dead_fraction"] > 0 and modified["energy_inconclusive_fraction"] == 0


def test_multirun_writes_four_results_and_report_aggregates(tmp_path: Path) -> None:
    run(["-m", "model=original,modified", "activation=relu,tanh", "logger=none", "n_neurons=24",
         "spurious.n_states=10", "lyapunov.n_states=15", "retrieval.n_cues=2", "task.stability=false"], tmp_path)
    results = results_in(tmp_path / "multirun")
    assert len(results) == 4 and all(r["status"] == "ok" for r in results)
    sweep = next((tmp_path / "multirun").glob("*/*"))
    proc = subprocess.run([sys.executable, "-m", "hopbench.app.report", str(sweep)], capture_output=True, text=True,
                          check=True)
    assert "retrieval_accuracy" in proc.stdout and proc.stdout.count("hebbian") == 4
    summary = pd.read_csv(sweep / "summary.csv")
    assert sorted(zip(summary["model"], summary["activation"], strict=True)) == [
        ("modified", "relu"), ("modified", "tanh"), ("original", "relu"), ("original", "tanh")]
    assert (sweep / "comparison_by_model.png").stat().st_size > 0


def test_train_task_saves_weights_logs_losses_and_evaluates_both_models(tmp_path: Path) -> None:
    run(["task=train", "compare=true", "logger=wandb", "n_neurons=24", "task.steps=20", "task.log_every=5",
         "spurious.n_states=8", "lyapunov.n_states=10", "retrieval.n_cues=2"], tmp_path,
        env={"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)})
    (result,) = results_in(tmp_path / "outputs")
    assert result["status"] == "ok" and result["task"] == "train"
    metrics = result["metrics"]
    assert metrics["train_steps"] == 20 and metrics["train_loss_final"] < metrics["train_loss_initial"]
    assert set(result["comparison"]) == {"original", "modified"}
    assert {"trained_weights.npz", "training.parquet", "retrieval.parquet"} <= set(result["tables"])
    run_dir = next(tmp_path.rglob("results.json")).parent
    weights = np.load(run_dir / "trained_weights.npz")
    assert weights["W"].shape == (24, 24) and np.allclose(weights["W"], weights["W"].T)
    assert pd.read_parquet(run_dir / "training.parquet")["step"].tolist() == [0, 5, 10, 15, 20]
    assert (run_dir / "training_loss.png").stat().st_size > 0
    (log,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    logged = [{i.key or "/".join(i.nested_key): i.value_json for i in r.history.item} for r in wandb_records(log)
              if r.WhichOneof("record_type") == "history"]
    assert [float(h["train/loss"]) for h in logged if "train/loss" in h] == pd.read_parquet(
        run_dir / "training.parquet")["loss"].tolist()  # every logged step reaches wandb


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF_DIR / "experiment").glob("sweep_*.yaml")))
def test_sweep_experiments_run_at_a_tiny_size(experiment: str, tmp_path: Path) -> None:
    """Each sweep experiment runs as a multirun over its own sweep keys, shrunk to two small jobs."""
    cfg = compose_cfg([f"experiment={experiment}"], hydra_node=True)
    keys = list(cfg.hydra.sweeper.params)
    values = {key: str(cfg.hydra.sweeper.params[key]).split(",") for key in keys} | {"n_neurons": ["20", "24"]}
    # command-line values of the sweep keys take precedence over hydra.sweeper.params
    tiny = [f"{key}={','.join(values[key][:2 if i == 0 else 1])}" for i, key in enumerate(keys)]
    extra = [] if "n_neurons" in keys else ["n_neurons=20"]
    if cfg.task.name in ("evaluate", "train"):
        extra += ["spurious.n_states=8", "lyapunov.n_states=10", "task.stability=false"]
    if cfg.task.name == "train":
        extra += ["task.steps=10"]
    run(["-m", f"experiment={experiment}", *tiny, *extra, "logger=none", "retrieval.n_cues=2"], tmp_path)
    results = results_in(tmp_path / "multirun")
    assert len(results) == 2 and all(r["status"] == "ok" for r in results), [r.get("error") for r in results]
    assert {r["config"]["experiment_name"] for r in results} == {experiment}


def test_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """A job that fails at run time (a 1-D array in the npz) is recorded as failed; the other job finishes."""
    path = tmp_path / "data.npz"
    np.savez(path, good=np.random.default_rng(1).choice([-1.0, 1.0], size=(10, 20)), flat=np.ones(20))
    run(["-m", "dataset=npz", f"dataset.path={path}", "dataset.kind=bipolar", "dataset.key=good,flat",
         "n_neurons=20", "n_patterns=2", "logger=none", "task.spurious=false", "task.stability=false",
         "lyapunov.n_states=9"], tmp_path)
    by_key = {r["config"]["dataset"]["key"]: r for r in results_in(tmp_path / "multirun")}
    assert by_key["good"]["status"] == "ok"
    assert by_key["flat"]["status"] == "failed"
    assert "dataset.key='flat'" in by_key["flat"]["error"] and "expected (P, N)" in by_key["flat"]["error"]


def wandb_run_record(path: Path):
    """The run record of an offline .wandb file, and the kinds of record it holds."""
    records = wandb_records(path)
    kinds = {r.WhichOneof("record_type") for r in records}
    return next(r.run for r in records if r.WhichOneof("record_type") == "run"), kinds


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline .wandb file (a LevelDB-style log)."""
    from wandb.proto import wandb_internal_pb2

    body, block, buf, i = path.read_bytes()[7:], 32768, b"", 0
    records = []
    while i + 7 <= len(body):
        if block - i % block < 7:
            i += block - i % block
            continue
        length, kind = int.from_bytes(body[i + 4:i + 6], "little"), body[i + 6]
        fragment = body[i + 7:i + 7 + length]
        i += 7 + length
        buf = fragment if kind in (1, 2) else buf + fragment
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(buf)
            records.append(record)
    return records


def test_wandb_offline_multirun_group_and_job_type(tmp_path: Path) -> None:
    run(["-m", "model=original,modified", "logger=wandb", "experiment_name=wbtest", "n_neurons=20",
         "task.spurious=false", "task.stability=false", "lyapunov.n_states=9", "retrieval.n_cues=2"], tmp_path,
        env={"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_CACHE_DIR": str(tmp_path / "cache"),
             "WANDB_CONFIG_DIR": str(tmp_path / "config")})
    files = sorted((tmp_path / "multirun").rglob("run-*.wandb"))
    assert len(files) == 2
    seen = {}
    for file in files:
        record, kinds = wandb_run_record(file)
        assert "exit" in kinds and "summary" in kinds  # each run properly finished
        assert record.run_group.startswith("wbtest/")
        seen[record.job_type] = record.run_group
    assert set(seen) == {"original", "modified"}
    assert len(set(seen.values())) == 1  # one group for the sweep


def test_atomic_writes_never_leave_half_files(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_nan_is_null_not_zero() -> None:
    assert json_safe({"x": float("nan"), "y": [float("inf"), 1.0]}) == {"x": None, "y": [None, 1.0]}
