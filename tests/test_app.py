"""The application: runs in this process (so coverage sees tasks, runner and report) write complete, honest
results; the command line's exit codes, sweeps, the report and wandb offline runs in fresh processes."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hopbench.analysis.metrics import retrieval, stability_at_patterns
from hopbench.app import runner, tasks
from hopbench.app.compose import job_from_config
from hopbench.app.report import main as report_main
from hopbench.app.report import warnings_for
from hopbench.app.tracking import atomic_path, json_safe, write_json
from tests.conftest import ROOT, compose_hydra, run_inprocess, subprocess_env

HOPBENCH = [sys.executable, "-m", "hopbench.app.cli"]
REQUIRED_RESULT_KEYS = {"config", "config_hash", "task", "status", "metrics", "theory_backed", "timing", "device",
                        "versions", "system", "models", "tables", "figures", "choices", "warnings"}
SMALL = ["logger=none", "n_neurons=24", "spurious.n_states=20", "lyapunov.n_states=30", "retrieval.n_cues=3"]


def run(args: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    full_env = subprocess_env(**{"WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore", **(env or {})})
    proc = subprocess.run([*HOPBENCH, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def results_in(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("results.json"))]


# runs in this process --------------------------------------------------------------------------------------------
def test_evaluate_writes_complete_results(tmp_path: Path) -> None:
    r = run_inprocess([*SMALL, "model=modified", "weights=hierarchical", "activation=smooth_leaky_relu"], tmp_path)
    assert r["status"] == "ok", r.get("error")
    assert set(r) >= REQUIRED_RESULT_KEYS
    metrics = r["metrics"]
    for key in ("retrieval_accuracy", "nearest_accuracy", "mean_overlap", "spurious_rate", "n_spurious_attractors",
                "stored_fraction", "stable_fraction", "energy_certified_fraction", "energy_inconclusive_fraction",
                "energy_unstable_fraction", "energy_jacobian_agreement", "dead_fraction",
                "lyapunov_violation_fraction", "lyapunov_max_relative_violation", "trajectory_energy_increase_fraction",
                "converged_fraction", "status_counts", "retrieval_end_state_counts", "random_end_state_counts"):
        assert key in metrics, key
    assert sum(metrics["status_counts"].values()) == 3 * max(1, round(0.05 * 24))  # every cue counted
    assert sum(metrics["random_end_state_counts"].values()) == 20  # every random start has a class
    assert r["choices"]["strategy"] == "i_minus_wt_lambda" and r["choices"]["energy"] == "e3"
    assert {"retrieval.parquet", "spurious.parquet", "stability.parquet", "lyapunov.parquet"} <= set(r["tables"])
    for name in r["tables"] + r["figures"]:
        assert (tmp_path / name).stat().st_size > 0
    table = pd.read_parquet(tmp_path / "retrieval.parquet")
    assert {"model", "pattern", "status", "overlap", "success", "end_state"} <= set(table.columns)


def test_original_ignores_a_strategy_with_a_note(tmp_path: Path) -> None:
    r = run_inprocess([*SMALL, "model=original", "strategy=i_minus_wt_lambda", "activation=relu",
                       "task.spurious=false", "task.lyapunov=false"], tmp_path)
    assert r["status"] == "ok" and r["models"]["original"]["strategy"] == "identity"
    assert "range_certified_fraction" in r["metrics"]
    assert any("does not apply to model=original" in n for n in r["notes"])


def test_degenerate_run_warns_in_results(tmp_path: Path) -> None:
    """The README's polar/relu/pseudo-inverse example diverges everywhere: the run says so, it does not print a
    silent 0."""
    r = run_inprocess([*SMALL, "model=modified", "strategy=polar", "activation=relu", "weights=pseudoinverse",
                       "task.stability=false", "task.lyapunov=false"], tmp_path)
    cues, starts = r["metrics"]["retrieval_end_state_counts"], r["metrics"]["random_end_state_counts"]
    assert cues["diverged"] == sum(cues.values()) and starts["diverged"] == sum(starts.values())
    assert r["warnings"] == [
        f"modified: {n} of {n} {label} trajectories never reached a steady state ({n} diverged); its metrics "
        "describe where they stopped, not attractors"
        for label, n in (("cue", sum(cues.values())), ("random-start", sum(starts.values())))]
    synthetic = {"choices": {"model": "m"}, "metrics": {"status_counts": {"converged": 0, "diverged": 5},
                                                          "capacity_alpha": None, "capacity_note": "why"}}
    assert warnings_for(synthetic) == [
        "m: 5 of 5 cue trajectories never reached a steady state (5 diverged); its metrics describe where they "
        "stopped, not attractors", "m: no capacity_alpha (why)"]
    synthetic["metrics"]["status_counts"] = {"converged": 1, "max_time": 3, "stalled": 1}
    assert warnings_for(synthetic)[0] == (
        "m: 4 of 5 cue trajectories never reached a steady state (3 max_time, 1 stalled); its metrics describe "
        "where they stopped, not attractors; a larger solver.t_max lets the max_time ones settle or stall")
    # where the end-state classes are recorded they decide (the table beside the warning shows them): a trajectory
    # that converged to a point Newton cannot polish is a stall there, not a settled one
    synthetic["metrics"] = {"spurious_status_counts": {"converged": 88, "max_time": 50, "stalled": 62},
                            "random_end_state_counts": {"memory": 4, "spurious": 80, "trivial": 3, "stall": 63,
                                                        "max_time": 50, "diverged": 0}}
    assert warnings_for(synthetic) == [
        "m: 113 of 200 random-start trajectories never reached a steady state (63 stall, 50 max_time); its metrics "
        "describe where they stopped, not attractors; a larger solver.t_max lets the max_time ones settle or stall"]
    synthetic["metrics"] = {"retrieval_end_state_counts": {"retrieved": 6, "spurious": 3, "stall": 1}}
    assert warnings_for(synthetic) == []  # most settled: nothing to warn about


def test_critical_load_task_reports_alpha_s(tmp_path: Path) -> None:
    r = run_inprocess(["task=critical_load", "logger=none", "n_neurons=30", "model=modified", "strategy=identity",
                       "activation=power", "dataset=lognormal", "cue=gaussian", "weights=pseudoinverse",
                       "weights.graded=true", "task.loads=[0.1,0.5,0.9]"], tmp_path)
    assert r["status"] == "ok"
    frame = pd.read_parquet(tmp_path / "critical_load.parquet")
    assert frame["load"].tolist() == [0.1, 0.5, 0.9]
    assert "alpha_s" in r["metrics"] and "alpha_s_note" in r["metrics"]
    assert (r["metrics"]["alpha_s"] is None) == (r["metrics"]["alpha_s_note"] is not None)


def test_lyapunov_task_on_a_small_y_state_model(tmp_path: Path) -> None:
    r = run_inprocess(["task=lyapunov", "logger=none", "model=modified_y", "weights=goe", "weights.sigma=2",
                       "n_neurons=6", "strategy=y_i_minus_lambda_wt", "lyapunov.n_states=30"], tmp_path)
    assert r["status"] == "ok" and r["metrics"]["lyapunov_violation_fraction"] == 0.0  # eq. 14's gradient flow


def test_train_task_saves_weights_and_evaluates_both_models(tmp_path: Path) -> None:
    r = run_inprocess(["task=train", "compare=true", "logger=none", "n_neurons=24", "task.steps=20",
                       "task.log_every=5", "spurious.n_states=8", "lyapunov.n_states=10", "retrieval.n_cues=2"],
                      tmp_path)
    assert r["status"] == "ok" and r["task"] == "train"
    assert r["metrics"]["train_steps"] == 20 and r["metrics"]["train_loss_final"] < r["metrics"]["train_loss_initial"]
    assert set(r["comparison"]) == {"original", "modified"}
    weights = np.load(tmp_path / "trained_weights.npz")
    assert weights["W"].shape == (24, 24) and np.allclose(weights["W"], weights["W"].T)


def test_a_failing_job_is_recorded_with_its_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise FloatingPointError("boom")

    monkeypatch.setattr(tasks, "retrieval", broken)
    with pytest.raises(FloatingPointError):
        run_inprocess([*SMALL], tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["status"] == "failed" and saved["error"] == "FloatingPointError: boom" and "traceback" in saved


def test_an_interrupted_job_is_recorded_as_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(tasks, "retrieval", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_inprocess([*SMALL], tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["status"] == "interrupted" and "interrupted" in saved["error"]


def test_objective_for_sweepers() -> None:
    results = {"metrics": {"retrieval_accuracy": 0.75, "note": "x"}}
    assert runner.objective(results, "metrics.retrieval_accuracy") == 0.75
    assert runner.objective(results, None) is None
    assert np.isnan(runner.objective(results, "metrics.note"))
    assert np.isnan(runner.objective(results, "metrics.missing"))


def test_run_names_are_unique_and_put_the_seed_last() -> None:
    cfg = compose_hydra(["experiment_name=exp"])
    name = runner._run_name(cfg, ["seed=2", "activation=relu", "logger=none", "load=0.1"], "evaluate")
    assert name == "exp-evaluate-activation=relu-load=0.1-seed=2"


def test_demo_shows_dead_neurons_that_eq4_cannot_certify_and_e3_can() -> None:
    """experiment=demo (make demo): the original retrieves, its stored fixed points have dead neurons and eq. 4 is
    inconclusive at some of them; E3 is inconclusive at none of the modified model's."""
    job = job_from_config(compose_hydra(["experiment=demo", "logger=none"]), explicit={"experiment"})
    assert [k.name for k in job.models()] == ["original", "modified"]
    found = {}
    for name, system in job.build().items():
        stab = stability_at_patterns(system, system.model, job.solver, job.stability,
                                     max_points=job.stability.max_points, threshold=job.retrieval.threshold)
        ret = retrieval(system, system.model, job.cue, job.solver, n_cues=2, threshold=job.retrieval.threshold)
        found[name] = {**stab.scalars, **ret.scalars}
    original, modified = found["original"], found["modified"]
    assert original["retrieval_retrieved_fraction"] >= 0.9 and original["stable_fraction"] == 1.0
    assert original["dead_fraction"] > 0 and original["energy_inconclusive_fraction"] > 0
    assert modified["dead_fraction"] > 0 and modified["energy_inconclusive_fraction"] == 0


def test_report_aggregates_and_counts_failures(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ok, failed = tmp_path / "ok", tmp_path / "failed"
    run_inprocess([*SMALL, "task.spurious=false", "task.stability=false", "task.lyapunov=false"], ok)
    write_json(failed / "results.json", {"status": "failed", "error": "ValueError: x", "task": "evaluate"})
    assert report_main([str(tmp_path), "--out", str(tmp_path / "report")]) == 1
    captured = capsys.readouterr()
    assert "1 of 2 runs did not finish ok" in captured.err and "ValueError: x" in captured.err
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert set(summary.query("row == 'job'")["status"]) == {"ok", "failed"}
    assert summary.query("row == 'aggregate'")[["n", "n_failed"]].sum().tolist() == [1, 1]


# the command line in fresh processes -----------------------------------------------------------------------------
def test_bad_input_exits_2_before_compute(tmp_path: Path) -> None:
    proc = run(["n_neurons=0"], tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "hopbench: error: n_neurons=0: must be an integer ≥ 1"
    assert not (tmp_path / "outputs").exists()


def test_failing_job_in_a_real_sweep(tmp_path: Path) -> None:
    """One job's data file disappears between the pre-flight and the run: it fails, the other runs, exit 1."""
    good, flaky = tmp_path / "good.npz", tmp_path / "flaky.npz"
    rng = np.random.default_rng(1)
    np.savez(good, x=rng.choice([-1.0, 1.0], size=(10, 20)))
    np.savez(flaky, x=rng.choice([-1.0, 1.0], size=(10, 20)))
    script = (f"import sys, os; from hopbench.app import cli; real = cli.preflight\n"
              f"def pre(argv):\n    n = real(argv); os.remove({str(flaky)!r}); return n\n"
              "cli.preflight = pre; sys.argv = ['hopbench'] + sys.argv[1:]; cli.main()")
    proc = subprocess.run([sys.executable, "-c", script, "-m", "dataset=npz", f"dataset.path={good},{flaky}",
                           "dataset.kind=bipolar", "n_neurons=20", "n_patterns=2", "logger=none",
                           "task.spurious=false", "task.stability=false", "lyapunov.n_states=9"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=subprocess_env(WANDB_MODE="disabled"))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "1 of 2 jobs did not finish ok" in proc.stderr and "flaky.npz" in proc.stderr
    statuses = sorted(r["status"] for r in results_in(tmp_path / "multirun"))
    assert statuses == ["failed", "ok"]


def test_multirun_and_report(tmp_path: Path) -> None:
    run(["-m", "model=original,modified", "activation=relu,tanh", "logger=none", "n_neurons=24",
         "spurious.n_states=10", "lyapunov.n_states=15", "retrieval.n_cues=2", "task.stability=false"], tmp_path)
    results = results_in(tmp_path / "multirun")
    assert len(results) == 4 and all(r["status"] == "ok" for r in results)
    sweep = next((tmp_path / "multirun").glob("*/*"))
    proc = subprocess.run([sys.executable, "-m", "hopbench.app.report", str(sweep)], capture_output=True, text=True,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    summary = pd.read_csv(sweep / "summary.csv").query("row == 'job'")
    assert sorted(zip(summary["model"], summary["activation"], strict=True)) == [
        ("modified", "relu"), ("modified", "tanh"), ("original", "relu"), ("original", "tanh")]


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("sweep_*.yaml")))
def test_sweep_experiments_run_at_a_tiny_size(experiment: str, tmp_path: Path) -> None:
    """Each sweep experiment runs as a multirun over its own sweep keys, shrunk to two small jobs."""
    cfg = compose_hydra([f"experiment={experiment}"], hydra_node=True)
    keys = list(cfg.hydra.sweeper.params)
    values = {key: str(cfg.hydra.sweeper.params[key]).split(",") for key in keys} | {"n_neurons": ["20", "24"]}
    tiny = [f"{key}={','.join(values[key][:2 if i == 0 else 1])}" for i, key in enumerate(keys)]
    extra = [] if "n_neurons" in keys else ["n_neurons=20"]
    task = cfg.hydra.runtime.choices.task
    if task in ("evaluate", "train"):
        extra += ["spurious.n_states=8", "lyapunov.n_states=10", "task.stability=false"]
    if task == "train":
        extra += ["task.steps=10"]
    run(["-m", f"experiment={experiment}", *tiny, *extra, "logger=none", "retrieval.n_cues=2"], tmp_path)
    results = results_in(tmp_path / "multirun")
    assert len(results) == 2 and all(r["status"] == "ok" for r in results), [r.get("error") for r in results]
    assert {r["config"]["experiment_name"] for r in results} == {experiment}


def test_optuna_sweeper_receives_the_objective(tmp_path: Path) -> None:
    proc = run(["-m", "hparams_search=modified_retrieval", "hydra.sweeper.n_trials=3", "n_neurons=20",
                "logger=none", "task.spurious=false", "task.stability=false", "task.lyapunov=false",
                "retrieval.n_cues=2"], tmp_path)
    results = results_in(tmp_path / "multirun")
    assert len(results) == 3 and all(r["status"] == "ok" for r in results)
    best = max(r["metrics"]["retrieval_accuracy"] for r in results)
    assert f"Best value: {best}" in proc.stdout + proc.stderr
    assert any(p.name == "optimization_results.yaml" for p in (tmp_path / "multirun").rglob("*.yaml"))


#: an offline .wandb file: a 7-byte header (":W&B", magic, version), then LevelDB log records in 32 KiB blocks
#: counted from the start of the file (a record never starts in a block's last 6 bytes: they are zero padding)
WANDB_HEADER, LOG_BLOCK, RECORD_HEADER = 7, 32768, 7


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline .wandb file, each fragment's CRC-32 checked (a misread fails loudly)."""
    from wandb.proto import wandb_internal_pb2

    data, buf, i = path.read_bytes(), b"", WANDB_HEADER
    records = []
    while i + RECORD_HEADER <= len(data):
        left = LOG_BLOCK - i % LOG_BLOCK
        if left < RECORD_HEADER:  # the block's trailer
            i += left
            continue
        crc, length, kind = (int.from_bytes(data[i:i + 4], "little"), int.from_bytes(data[i + 4:i + 6], "little"),
                             data[i + 6])
        fragment = data[i + RECORD_HEADER:i + RECORD_HEADER + length]
        if kind == 0 and length == 0 and not fragment:  # zeros: the unwritten end of a file still open
            break
        assert zlib.crc32(bytes([kind]) + fragment) == crc, f"{path}: bad record at byte {i}"
        i += RECORD_HEADER + length
        buf = fragment if kind in (1, 2) else buf + fragment  # FULL, FIRST; MIDDLE and LAST append
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(buf)
            records.append(record)
    return records


def test_wandb_records_reads_records_across_blocks_and_trailers(tmp_path: Path) -> None:
    """The reader against a log written by the format's rules: a record split over a block boundary (FIRST, LAST)
    and a 3-byte trailer at the end of a block (the case the reader once took for a record, which lost what
    followed)."""
    from wandb.proto import wandb_internal_pb2

    def fragment(kind: int, payload: bytes) -> bytes:
        return (zlib.crc32(bytes([kind]) + payload).to_bytes(4, "little") + len(payload).to_bytes(2, "little")
                + bytes([kind]) + payload)

    def record(key: str, size: int) -> bytes:
        r = wandb_internal_pb2.Record()
        r.history.item.add(key=key, value_json="x" * size)
        return r.SerializeToString()

    first, split, last = record("a", 100), record("b", 40_000), record("c", 50)
    out = bytearray(b":W&B\xe1\xbe\x00") + fragment(1, first)
    room = LOG_BLOCK - len(out) - RECORD_HEADER  # the split record fills the first block ...
    out += fragment(2, split[:room]) + fragment(4, split[room:])  # ... and ends in the second
    filler = LOG_BLOCK - len(out) % LOG_BLOCK - 3 - RECORD_HEADER  # a record that leaves 3 bytes of the block
    middle = next(m for n in range(filler, 0, -1) if len(m := record("d", n)) == filler)
    out += fragment(1, middle) + bytes(3) + fragment(1, last)
    path = tmp_path / "run-test.wandb"
    path.write_bytes(bytes(out))
    keys = [r.history.item[0].key for r in wandb_records(path)]
    assert keys == ["a", "b", "d", "c"]


def test_wandb_offline_multirun_group_job_type_and_names(tmp_path: Path) -> None:
    proc = run(["-m", "model=original,modified", "logger=wandb", "experiment_name=wbtest", "n_neurons=20",
         "task.spurious=false", "task.stability=false", "lyapunov.n_states=9", "retrieval.n_cues=2"], tmp_path,
        env={"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_CACHE_DIR": str(tmp_path / "cache"),
             "WANDB_CONFIG_DIR": str(tmp_path / "config")})
    files = sorted((tmp_path / "multirun").rglob("run-*.wandb"))
    assert len(files) == 3, proc.stderr[-3000:]  # a run per job and the sweep's summary run
    seen, logged = {}, {}
    for file in files:
        records = wandb_records(file)
        kinds = {r.WhichOneof("record_type") for r in records}
        record = next(r.run for r in records if r.WhichOneof("record_type") == "run")
        assert "exit" in kinds and "summary" in kinds  # each run properly finished
        assert record.run_group.startswith("wbtest/")
        seen[record.job_type] = (record.run_group, record.display_name)
        history = ["/".join(item.nested_key) or item.key for r in records if r.WhichOneof("record_type") == "history"
                   for item in r.history.item]
        artifacts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
        logged[record.job_type] = ({"/".join(key.split("/")[:2]) for key in history},
                                   {e.path for a in artifacts for e in a.manifest.contents})
    assert set(seen) == {"original", "modified", "summary"}
    assert len({group for group, _ in seen.values()}) == 1  # one group for the sweep, summary run included
    tables, files_logged = logged["summary"]
    assert {"summary/jobs", "summary/aggregates"} <= tables and {"summary.csv", "summary.parquet"} <= files_logged
    assert "results.json" in logged["original"][1] and "results.json" in logged["modified"][1]
    seen.pop("summary")
    names = [name for _, name in seen.values()]
    assert len(set(names)) == 2 and all(n.startswith("wbtest-evaluate-") for n in names)
    assert {n for n in names if "model=original" in n} and {n for n in names if "model=modified" in n}


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
