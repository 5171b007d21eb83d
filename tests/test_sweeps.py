"""Sweeps at scale: launcher presets, resume without recompute, self-describing job folders, the sweep summary
(aggregates over seeds, figures), wandb runs that dashboards can use, and progress at the sweep level.

Unit tests run in this process; sweeps through the command line run in fresh processes (marked slow)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.errors import ConfigCompositionException

from hopbench import threads
from hopbench.app import plots, runner, tasks
from hopbench.app.report import aggregate, collect, figure_axes, key_columns, write_summary
from hopbench.app.sweep import MAX_DIRNAME, job_dirname
from hopbench.app.tracking import RUN_SETTINGS, completed, config_hash, flat_config, run_id, write_json
from tests.conftest import compose_hydra, run_inprocess, subprocess_env
from tests.test_app import wandb_records

HOPBENCH = [sys.executable, "-m", "hopbench.app.cli"]
TINY = ["logger=none", "n_neurons=16", "spurious.n_states=6", "lyapunov.n_states=6", "retrieval.n_cues=2",
        "task.stability=false"]
PNG = b"\x89PNG\r\n\x1a\n"


def hopbench(args: list[str], cwd: Path, env: dict | None = None, **kwargs: object) -> subprocess.CompletedProcess:
    full_env = subprocess_env(**{"WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore", **(env or {})})
    return subprocess.run([*HOPBENCH, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=900,
                          **kwargs)


def file_digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# job folders --------------------------------------------------------------------------------------------------
def test_job_folders_name_what_they_ran() -> None:
    assert job_dirname(["seed=2", "model=modified", "activation=relu"]) == "activation=relu,model=modified,seed=2"
    # excluded keys are left out (a group's key with its parameters); a leading + or ~ does not hide a key
    assert job_dirname(["logger=wandb", "logger.mode=offline", "+n_neurons=20", "load=0.1"],
                       exclude=["logger", "logger.*", "load"]) == "+n_neurons=20"
    # a fixed option does not hide its swept parameters
    assert job_dirname(["dataset=npz", "dataset.path=a.npz"], exclude=["dataset"]) == "dataset.path=a.npz"
    assert job_dirname([]) == job_dirname(["n_neurons=20"], exclude=["n_neurons"]) == "job"


def test_folder_names_leave_out_the_run_settings() -> None:
    """conf/config.yaml's exclude_keys are the run settings that config_hash leaves out (hydra's own keys are
    never in a job's overrides)."""
    cfg = compose_hydra([], hydra_node=True)
    excluded = cfg.hydra.job.config.override_dirname.exclude_keys
    assert {key.removesuffix(".*") for key in excluded} == set(RUN_SETTINGS) - {"hydra"}


def test_the_resumable_sweeper_names_jobs_by_their_swept_keys(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hopbench.app.sweep import resumable_batches

    sweeper = SimpleNamespace(config=compose_hydra([f"hydra.sweep.dir={tmp_path}"], hydra_node=True))
    parser = OverridesParser.create()
    batches = resumable_batches(sweeper, parser.parse_overrides(["device=cpu,cuda", "seed=0,1", "model=modified",
                                                                 "logger=none"]), None)
    assert len(batches) == 1 and len(batches[0]) == 4
    names = []
    for job in batches[0]:
        *task, naming = parser.parse_overrides(job)
        assert naming.key_or_group == "hydra.job.config.override_dirname.exclude_keys"
        names.append(job_dirname([o.input_line for o in task], naming.value()))
    assert names == ["device=cpu,seed=0", "device=cpu,seed=1", "device=cuda,seed=0", "device=cuda,seed=1"]
    batches = resumable_batches(sweeper, parser.parse_overrides(["seed=0,1,2"]), 2)  # max_batch_size=2
    assert [[job[0] for job in batch] for batch in batches] == [["seed=0", "seed=1"], ["seed=2"]]


def test_job_folders_stay_short_and_distinct() -> None:
    unsafe = job_dirname(["dataset.path=/data/a b.npz"])
    assert "/" not in unsafe and " " not in unsafe and unsafe.startswith("dataset.path=_data_a_b.npz-")
    assert unsafe != job_dirname(["dataset.path=/data/a_b.npz"])  # the hash keeps them apart
    longs = [job_dirname([f"task.loads=[{','.join(['0.1'] * 40)}]", f"seed={s}"]) for s in range(3)]
    assert all(len(name) == MAX_DIRNAME for name in longs) and len(set(longs)) == 3
    exact = "activation.beta=" + "1" * (MAX_DIRNAME - len("activation.beta="))
    assert job_dirname([exact]) == exact  # at the limit: kept as it is


def test_config_hash_is_the_science_only() -> None:
    base = compose_hydra(["logger=none"])
    same = compose_hydra(["logger=wandb", "device=cpu", "threads=3", "resume=false", "experiment_name=other",
                          "objective=metrics.retrieval_accuracy"])
    other_seed, other_beta = compose_hydra(["seed=1"]), compose_hydra(["activation.beta=2"])
    from omegaconf import OmegaConf

    digest = [config_hash(OmegaConf.to_container(c, resolve=True)) for c in (base, same, other_seed, other_beta)]
    assert digest[0] == digest[1] and len(set(digest)) == 3


def test_flat_config_for_filters_and_groups() -> None:
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(compose_hydra(["task=critical_load", "task.loads=[0.1,0.5]"]), resolve=True)
    flat = flat_config(config, {"activation": "tanh", "task": "critical_load"})
    assert flat["activation"] == "tanh" and flat["activation.beta"] == config["activation"]["beta"]
    assert flat["task.loads"] == "[0.1, 0.5]" and flat["n_neurons"] == config["n_neurons"]
    assert not any(isinstance(v, dict | list) for v in flat.values()) and not any("_target_" in k for k in flat)


# threads and devices under launchers --------------------------------------------------------------------------
@pytest.mark.parametrize(("launcher", "cores", "share"), [
    ({"n_jobs": 2}, 8, 4), ({"n_jobs": -1}, 8, 1), ({"n_jobs": -2}, 8, 1), ({"n_jobs": 3}, 8, 2),
    ({"n_jobs": 16}, 8, 1), ({"cpus_per_task": 3}, 8, 3), ({"cpus_per_task": None}, 8, None), ({}, 8, None)])
def test_a_launcher_gives_each_job_its_share_of_the_cores(launcher: dict, cores: int, share: int | None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from omegaconf import OmegaConf

    monkeypatch.setattr(threads, "available_cores", lambda: cores)
    assert runner.launcher_cores(OmegaConf.create(launcher)) == share


def test_threads_auto_takes_the_share_and_a_number_is_kept(monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    from omegaconf import OmegaConf

    from hopbench.app.compose import job_from_config

    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setattr(threads, "idle_cores", lambda: 8.0)  # an idle machine
    big = job_from_config(compose_hydra(["logger=none", f"n_neurons={threads.JOB_THREADS_FROM}"]))
    assert big.threads == 8  # auto: every idle core for a large problem ...
    assert runner.job_threads(big, "auto", OmegaConf.create({"n_jobs": 4})) == 2  # ... but 4 jobs × 2 ≤ 8 cores
    assert runner.job_threads(big, "auto", OmegaConf.create({})) == 8
    fixed = job_from_config(compose_hydra(["logger=none", "threads=4"]))
    assert runner.job_threads(fixed, 4, OmegaConf.create({"n_jobs": 4})) == 4
    assert "oversubscribe" in caplog.text


# hopbench.conf silences Hydra's notice on merging these files onto the plugins' configs; pytest resets warning
# filters around each test, so a test that composes them after the first import sees the notice (a real run, below,
# does not)
@pytest.mark.filterwarnings(r"ignore:\s*'hydra/launcher/:UserWarning")
def test_launcher_presets_keep_the_gpu_and_check_types() -> None:
    joblib = compose_hydra(["hydra/launcher=joblib"], hydra_node=True)
    local = compose_hydra(["hydra/launcher=submitit_local"], hydra_node=True)
    slurm = compose_hydra(["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                           "hydra.launcher.gpus_per_node=1"], hydra_node=True)
    assert joblib.hydra.launcher.n_jobs == -1 and joblib.hydra.launcher.backend is None  # the plugin's keys too
    assert local.hydra.launcher.gpus_per_node == 1 and local.hydra.launcher.cpus_per_task == 1
    assert slurm.hydra.launcher.partition == "gpu" and slurm.hydra.launcher.array_parallelism > 0
    assert {c.device for c in (joblib, local, slurm)} == {"auto"}  # nothing overrides device=auto
    with pytest.raises(ConfigCompositionException, match="mem_gb"):
        compose_hydra(["hydra/launcher=submitit_slurm", "hydra.launcher.mem_gb=lots"], hydra_node=True)


def test_presets_print_no_hydra_deprecation_notice(tmp_path: Path) -> None:
    proc = hopbench(["--cfg", "hydra", "hydra/launcher=submitit_slurm"], tmp_path, env={"PYTHONWARNINGS": "default"})
    assert proc.returncode == 0, proc.stderr
    assert "SlurmLauncher" in proc.stdout and "deprecated" not in proc.stderr


# resume in a job ----------------------------------------------------------------------------------------------
def test_a_complete_job_is_not_run_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = run_inprocess([*TINY, "task.lyapunov=false"], tmp_path)
    before = (tmp_path / "results.json").read_bytes()
    assert completed(tmp_path, first["config_hash"]) is not None

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a complete job ran again")

    monkeypatch.setattr(tasks, "retrieval", never)
    run_inprocess([*TINY, "task.lyapunov=false", "resume=true", "device=cpu", "threads=1"], tmp_path)
    assert (tmp_path / "results.json").read_bytes() == before
    with pytest.raises(AssertionError, match="ran again"):  # other science: it runs
        run_inprocess([*TINY, "task.lyapunov=false", "resume=true", "seed=1"], tmp_path)
    assert completed(tmp_path, first["config_hash"]) is None  # that attempt's failure replaced the results


# the summary ---------------------------------------------------------------------------------------------------
def _jobs_frame() -> pd.DataFrame:
    rows = []
    for model, offset in (("original", 0.0), ("modified", 0.5)):
        for load in (0.05, 0.1):
            for seed, noise in enumerate((0.0, 0.1, 0.3)):
                rows.append({"run_dir": f"{model}-{load}-{seed}", "status": "ok", "task": "evaluate", "model": model,
                             "load": load, "n_neurons": 20, "activation.beta": 4.0, "seed": seed,
                             "retrieval_accuracy": offset + noise, "capacity_alpha": None if seed == 2 else load})
    rows.append({**rows[0], "run_dir": "failed", "seed": 3, "status": "failed", "retrieval_accuracy": None})
    return pd.DataFrame(rows)


def test_aggregates_over_seeds_never_mix_configurations() -> None:
    frame = _jobs_frame()
    agg = aggregate(frame).set_index(["model", "load"])
    assert len(agg) == 4 and key_columns(frame) == ["task", "model", "load", "n_neurons", "activation.beta"]
    row = agg.loc[("modified", 0.1)]
    values = np.array([0.5, 0.6, 0.8])
    assert row["n"] == 3 and row["n_failed"] == 0 and row["seeds"] == "0,1,2"
    assert row["retrieval_accuracy"] == pytest.approx(values.mean())
    assert row["retrieval_accuracy_se"] == pytest.approx(np.std(values, ddof=1) / math.sqrt(3))
    assert row["capacity_alpha"] == pytest.approx(0.1) and row["capacity_alpha_n"] == 2  # null left out, not 0
    failed = agg.loc[("original", 0.05)]
    assert failed["n"] == 3 and failed["n_failed"] == 1 and failed["retrieval_accuracy"] == pytest.approx(0.4 / 3)


def test_figure_axes_leave_out_what_other_keys_decide() -> None:
    points = pd.DataFrame({"model": ["original", "modified"] * 2, "strategy": ["identity", "polar"] * 2,
                           "activation": ["relu", "relu", "tanh", "tanh"],
                           "activation.beta": [None, None, 4.0, 4.0], "n_neurons": [20] * 4})
    assert figure_axes(points, list(points.columns)) == ["model", "activation"]
    grid = pd.DataFrame({"n_neurons": [20, 20, 40, 40], "load": [0.1, 0.2, 0.1, 0.2], "n_patterns": [2, 4, 4, 8]})
    assert figure_axes(grid, list(grid.columns)) == ["n_neurons", "load"]


def test_metric_lines_draw_null_as_a_gap_with_error_bars() -> None:
    points = pd.DataFrame({"load": [0.05, 0.1, 0.2] * 2, "model": ["original"] * 3 + ["modified"] * 3,
                           "accuracy": [1.0, None, 0.2, 1.0, 0.9, 0.7], "accuracy_se": [0.1, None, None, 0, 0.05, 0.1],
                           "n": [3, 0, 1, 3, 3, 3]})
    fig = plots.metric_lines(points, "accuracy", "load", ["model"], "t")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    original = lines["model=original (n=0–3)"].get_ydata()
    assert original[0] == 1.0 and np.isnan(original[1]) and original[2] == 0.2  # null: a gap, not 0
    bars = [c for c in ax.collections if len(c.get_segments())]
    spans = sorted(round(float(seg[1][1] - seg[0][1]), 6) for c in bars for seg in c.get_segments())
    assert spans == [0.0, 0.1, 0.2, 0.2]  # 2 s.e. per point with a spread; none where one seed or null
    with pytest.raises(ValueError, match="never averages different configurations"):
        plots.metric_lines(points, "accuracy", "load", [], "t")


def test_phase_diagram_marks_null_cells() -> None:
    points = pd.DataFrame({"n_neurons": [20, 20, 40, 40], "load": [0.1, 0.2, 0.1, 0.2],
                           "accuracy": [1.0, 0.5, None, 0.25], "n": [3, 3, 3, 2]})
    fig = plots.phase_diagram(points, "accuracy", "load", "n_neurons", [], "t")
    image = fig.axes[0].get_images()[0].get_array()
    assert image.mask.tolist() == [[False, False], [True, False]]  # the null cell is masked, not 0
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "null" in texts and "0.25\nn=2" in texts


def test_a_swept_load_is_the_axis_as_asked_not_the_rounded_one(tmp_path: Path) -> None:
    """load=0.05,0.1 at N = 16, 24 builds P = round(αN) patterns, so P/N differs from cell to cell; the summary's
    keys and figures use the load asked for, and the grid has no holes."""
    for n in (16, 24):
        for load in (0.05, 0.1):
            p = max(1, round(load * n))
            write_json(tmp_path / f"{n}-{load}" / "results.json", {
                "status": "ok", "task": "evaluate", "config_hash": f"{n}{load}", "choices": {"model": "original"},
                "config": {"n_neurons": n, "load": load, "n_patterns": None, "seed": 0},
                "system": {"n_neurons": n, "n_patterns": p, "load": p / n}, "metrics": {"retrieval_accuracy": 1.0}})
    frame = collect([tmp_path])
    assert sorted(frame["load"]) == [0.05, 0.05, 0.1, 0.1] and frame["system.load"].nunique() == 4
    summary = write_summary(frame, tmp_path / "out")
    assert summary.axes == ["n_neurons", "load"]
    phase = tmp_path / "out" / "summary_figures" / "retrieval_accuracy_phase_n_neurons_load.png"
    assert phase in summary.figures
    points = summary.frame[summary.frame["row"] == "aggregate"]
    image = plots.phase_diagram(points, "retrieval_accuracy", "load", "n_neurons", [], "t").axes[0].get_images()[0]
    assert not image.get_array().mask.any()


def test_write_summary_files(tmp_path: Path) -> None:
    summary = write_summary(_jobs_frame(), tmp_path)
    table = pd.read_csv(tmp_path / "summary.csv")
    assert table["row"].value_counts().to_dict() == {"job": 13, "aggregate": 4}
    assert pd.read_parquet(tmp_path / "summary.parquet").shape == table.shape
    assert [p.name for p in summary.figures] == ["retrieval_accuracy_vs_load.png"]  # one numeric key: no heatmap
    assert all(p.read_bytes().startswith(PNG) for p in summary.figures)


# wandb -------------------------------------------------------------------------------------------------------
def test_wandb_job_run_holds_results_flat_config_tags_and_resumes_its_id(offline_wandb: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = offline_wandb / "job"
    overrides = ["logger=wandb", *TINY[1:], "task.lyapunov=false", "task.spurious=false", "activation=tanh"]
    real = tasks.retrieval

    def broken(*args: object, **kwargs: object) -> None:
        raise FloatingPointError("first attempt fails")

    monkeypatch.setattr(tasks, "retrieval", broken)
    with pytest.raises(FloatingPointError):
        run_inprocess(overrides, out)
    time.sleep(1.1)  # wandb names an offline run's folder by the second it started
    monkeypatch.setattr(tasks, "retrieval", real)
    results = run_inprocess(overrides, out)
    files = sorted(out.rglob("run-*.wandb"))
    assert len(files) == 2
    runs = [next(r.run for r in wandb_records(f) if r.WhichOneof("record_type") == "run") for f in files]
    assert {r.run_id for r in runs} == {run_id(results["config_hash"], out)}  # the re-run continues the run
    config = {item.key: json.loads(item.value_json) for item in runs[-1].config.update}
    assert config["activation"] == "tanh" and "activation.beta" in config and config["n_neurons"] == 16
    assert not any(isinstance(v, dict) for k, v in config.items() if k != "_wandb")
    assert {"task=evaluate", "model=original", "activation=tanh"} <= set(runs[-1].tags)
    artifacts = [r.artifact for r in wandb_records(files[-1]) if r.WhichOneof("record_type") == "artifact"
                 and r.artifact.type == "results"]
    assert len(artifacts) == 1
    assert {"results.json", "retrieval.parquet"} <= {e.path for e in artifacts[0].manifest.contents}


def test_wandb_artifact_of_a_training_job_holds_the_trained_weights(offline_wandb: Path) -> None:
    run_inprocess(["task=train", "logger=wandb", "n_neurons=12", "task.steps=4", "task.log_every=2",
                   "spurious.n_states=4", "lyapunov.n_states=4", "retrieval.n_cues=1", "task.stability=false"],
                  offline_wandb / "job")
    records = wandb_records(next((offline_wandb / "job").rglob("run-*.wandb")))
    artifact = next(r.artifact for r in records if r.WhichOneof("record_type") == "artifact"
                    and r.artifact.type == "results")
    assert {"results.json", "trained_weights.npz", "training.parquet"} <= {e.path for e in artifact.manifest.contents}


# sweeps through the command line -------------------------------------------------------------------------------
@pytest.mark.slow
def test_sweep_summary_with_means_over_seeds(tmp_path: Path) -> None:
    """hopbench -m model=original,modified activation=relu,tanh seed=0,1,2: 12 job rows, 4 aggregated rows."""
    sweep = tmp_path / "sweep"
    proc = hopbench(["-m", "model=original,modified", "activation=relu,tanh", "seed=0,1,2", *TINY,
                     "task.lyapunov=false", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folders = sorted(p.name for p in sweep.iterdir() if (p / "results.json").is_file())
    assert folders == sorted(f"activation={a},model={m},seed={s}" for a in ("relu", "tanh")
                             for m in ("original", "modified") for s in range(3))
    table = pd.read_csv(sweep / "summary.csv")
    jobs, agg = table[table["row"] == "job"], table[table["row"] == "aggregate"]
    assert len(jobs) == 12 and len(agg) == 4 and pd.read_parquet(sweep / "summary.parquet").shape == table.shape
    for (model, activation), group in agg.groupby(["model", "activation"]):
        runs = [json.loads((sweep / f"activation={activation},model={model},seed={s}" / "results.json").read_text())
                for s in range(3)]
        for metric in ("retrieval_accuracy", "spurious_rate"):
            values = np.array([r["metrics"][metric] for r in runs], dtype=float)
            row = group.iloc[0]
            assert row["n"] == 3 and row["seeds"] == "0,1,2" and row[f"{metric}_n"] == 3
            assert row[metric] == pytest.approx(values.mean())
            assert row[f"{metric}_se"] == pytest.approx(values.std(ddof=1) / math.sqrt(3), abs=1e-12)
    figures = sorted((sweep / "summary_figures").glob("*.png"))
    assert "retrieval_accuracy_vs_activation.png" in {p.name for p in figures}
    assert all(p.read_bytes().startswith(PNG) for p in figures)
    assert "12/12 jobs done" in proc.stderr and "summary:" in proc.stderr
    assert "12/12 jobs done" in (sweep / "sweep.log").read_text()
    assert "ResumableSweeper" in (sweep / "multirun.yaml").read_text()


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_recompute(tmp_path: Path) -> None:
    """SIGKILL a 6-job sweep once 2 jobs have finished; the same command then runs exactly the unfinished jobs and
    leaves the finished ones' files as they were, byte for byte."""
    sweep = tmp_path / "sweep"
    args = ["-m", "model=original,modified", "seed=0,1,2", *TINY, f"hydra.sweep.dir={sweep}"]
    env = subprocess_env(WANDB_MODE="disabled", PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([*HOPBENCH, *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            ok = [p for p in sweep.glob("*/results.json") if json.loads(p.read_text()).get("status") == "ok"]
            if len(ok) >= 2:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finished = {p.parent for p in sweep.glob("*/results.json") if json.loads(p.read_text())["status"] == "ok"}
    assert 2 <= len(finished) < 6, "the sweep must be killed half-way"
    before = {folder: file_digests(folder) for folder in finished}
    stamps = {p.parent: p.stat().st_mtime_ns for p in sweep.glob("*/results.json")}

    rerun = hopbench(args, tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    results = {p.parent: json.loads(p.read_text()) for p in sweep.glob("*/results.json")}
    assert len(results) == 6 and all(r["status"] == "ok" for r in results.values())
    ran = {folder for folder in results if stamps.get(folder) != (folder / "results.json").stat().st_mtime_ns}
    assert ran == set(results) - finished  # exactly the unfinished jobs ran
    assert {folder: file_digests(folder) for folder in finished} == before  # untouched, byte for byte
    assert f"resume: {len(finished)} of 6 jobs already complete" in rerun.stderr
    assert f"6/6 jobs done, {len(finished)} resumed" in rerun.stderr
    assert len(pd.read_csv(sweep / "summary.csv").query("row == 'job'")) == 6


@pytest.mark.slow
def test_submitit_local_runs_each_job_in_its_own_process(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = hopbench(["-m", "hydra/launcher=submitit_local", "model=original,modified", *TINY, "task.lyapunov=false",
                     f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in (sweep / ".submitit").iterdir() if list(p.glob("*_result.pkl")))
    assert len(jobs) == 2 and all(p.name.isdigit() for p in jobs)  # a local job's id is its own process's id
    logs = " ".join(p.read_text() for job in jobs for p in job.glob("*_log.*"))
    assert "model=original" in logs and "model=modified" in logs  # each job's story in its own process's log
    results = [json.loads(p.read_text()) for p in sweep.glob("*/results.json")]
    assert sorted(r["choices"]["model"] for r in results) == ["modified", "original"]
    assert all(r["system"]["threads"] == 1 for r in results)  # cpus_per_task=1 caps threads=auto
    assert len(pd.read_csv(sweep / "summary.csv").query("row == 'job'")) == 2
    assert "2/2 jobs done" in proc.stderr


FAKE_SBATCH = """\
import os, re, subprocess, sys
script = open(sys.argv[1]).read()
open(os.environ["FAKE_SLURM_LOG"], "a").write(script + "\\n#END\\n")
first, last = map(int, re.search(r"--array=(\\d+)-(\\d+)", script).groups())
print("Submitted batch job 4242", flush=True)
env = {**os.environ, "SLURM_ARRAY_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
       "SLURM_NODEID": "0", "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "localhost"}
tasks = [{**env, "SLURM_ARRAY_TASK_ID": str(a), "SLURM_JOB_ID": str(5000 + a)} for a in range(first, last + 1)]
code = "import subprocess, sys, json; [subprocess.run(['bash', sys.argv[1]], env=e) for e in json.loads(sys.argv[2])]"
import json
subprocess.Popen([sys.executable, "-c", code, sys.argv[1], json.dumps(tasks)], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""
FAKE_SRUN = """\
import os, sys
args = sys.argv[1:]
while args and args[0].startswith("-"):
    args = args[2:] if args[0] in ("--output", "--error") else args[1:]
os.execvp(args[0], args)
"""


@pytest.mark.slow
def test_submitit_slurm_preset_on_a_stand_in_cluster(tmp_path: Path) -> None:
    """The SLURM preset through submitit with stand-ins for sbatch, srun and sacct that run the array's tasks here:
    the sbatch script asks for what the preset and the command line say, every task runs, the summary appears."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("sbatch", FAKE_SBATCH), ("srun", FAKE_SRUN), ("sacct", "")):
        (bin_dir / name).write_text(f"#!{sys.executable}\n{body}")
        (bin_dir / name).chmod(0o755)
    sweep, log = tmp_path / "sweep", tmp_path / "sbatch.log"
    proc = hopbench(["-m", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                     "hydra.launcher.gpus_per_node=1", "hydra.launcher.array_parallelism=1", "model=original,modified",
                     *TINY, "task.lyapunov=false", f"hydra.sweep.dir={sweep}"], tmp_path,
                    env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_SLURM_LOG": str(log)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    script = log.read_text()
    for flag in ("--partition=gpu", "--time=240", "--mem=16GB", "--cpus-per-task=4", "--gpus-per-node=1",
                 "--array=0-1%1"):
        assert f"#SBATCH {flag}\n" in script, flag
    results = [json.loads(p.read_text()) for p in sweep.glob("*/results.json")]
    assert sorted(r["choices"]["model"] for r in results) == ["modified", "original"]
    assert all(r["status"] == "ok" and r["system"]["threads"] <= 4 for r in results)
    assert len(pd.read_csv(sweep / "summary.csv").query("row == 'job'")) == 2


@pytest.mark.slow
def test_joblib_jobs_share_the_cores(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = hopbench(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model=original,modified",
                     "logger=none", "n_neurons=400", "retrieval.n_cues=1", "task.spurious=false",
                     "task.stability=false", "task.lyapunov=false", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sweep.glob("*/results.json")]
    cores = len(os.sched_getaffinity(0))
    assert len(results) == 2 and all(r["system"]["threads"] == max(1, cores // 2) for r in results)


def test_report_over_any_directories(tmp_path: Path) -> None:
    for seed in (0, 1):
        run_inprocess([*TINY, "task.lyapunov=false", "task.spurious=false", f"seed={seed}"], tmp_path / f"s{seed}")
    frame = collect([tmp_path / "s0", tmp_path / "s1"])
    assert len(frame) == 2 and frame["activation.beta"].notna().all()
    from hopbench.app.report import main as report_main

    assert report_main([str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "r")]) == 0
    table = pd.read_csv(tmp_path / "r" / "summary.csv")
    agg = table[table["row"] == "aggregate"]
    assert len(agg) == 1 and agg.iloc[0]["n"] == 2 and agg.iloc[0]["seeds"] == "0,1"
