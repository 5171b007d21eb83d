"""Every reproduction runs at its tiny size (no figures) and writes verdicts computed from the run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from hopbench.repro import MODULES, TIMING_FILE, Context, Verdict, reproduce, write_report
from tests.conftest import DEVICE, compose_hydra, run_inprocess, subprocess_env


def tiny_params(name: str) -> dict:
    cfg = compose_hydra([f"experiment=repro_{name}"])
    assert cfg.task._target_ == "hopbench.repro.task.Reproduce" and cfg.task.which == name
    assert cfg.task.params and cfg.task.full_params and cfg.task.tiny_params
    return OmegaConf.to_container(cfg.task.tiny_params, resolve=True)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_reproduction_runs_at_tiny_size(name: str, tmp_path: Path) -> None:
    ctx = Context(name, tmp_path / name, torch.device(DEVICE), figures=False)
    document = reproduce(name, tiny_params(name), ctx)
    assert document["claims"], "a reproduction must check at least one claim"
    for claim in document["claims"]:
        assert claim["claim"] and claim["tolerance"]
        assert isinstance(claim["passed"], bool)
        assert claim["measured"] is not None
    saved = json.loads((tmp_path / name / "verdict.json").read_text())
    assert saved["passed"] == all(c["passed"] for c in saved["claims"])
    assert any(f.endswith(".csv") for f in saved["files"])
    assert not any(f.endswith(".png") for f in saved["files"])


def test_report_lists_every_claim(tmp_path: Path) -> None:
    ctx = Context("fig1", tmp_path / "fig1", torch.device(DEVICE), figures=False)
    document = reproduce("fig1", tiny_params("fig1"), ctx)
    report = write_report(tmp_path).read_text()
    assert report.count("| [fig1](fig1/) |") == len(document["claims"])
    passed = sum(c["passed"] for c in document["claims"])
    assert f"**{passed} of {len(document['claims'])} claims pass** (0 of the failures vacuous)." in report
    rows = [line for line in report.splitlines() if line.startswith("| [")]
    assert all(len(re.findall(r"(?<!\\)\|", row)) == 6 for row in rows)  # |ΔE| in a claim stays in its cell


@pytest.mark.parametrize("name", ["prop1", "training"])
def test_committed_outputs_are_deterministic_and_timings_go_elsewhere(name: str, tmp_path: Path) -> None:
    """Two runs write byte-identical verdict.json, CSV and REPORT.md; the wall time lives in timing.json and
    TIMINGS.md only (training's histories carry no time column)."""
    snapshots = []
    for _ in range(2):
        ctx = Context(name, tmp_path / name, torch.device(DEVICE), figures=False)
        reproduce(name, tiny_params(name), ctx)
        write_report(tmp_path)
        snapshots.append({p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())}
                         | {"REPORT.md": (tmp_path / "REPORT.md").read_bytes()})
        timing = json.loads((tmp_path / name / TIMING_FILE).read_text())
        assert timing["wall_s"] >= 0 and timing["device"] == str(torch.device(DEVICE))
    committed = [name for name in snapshots[0] if name != TIMING_FILE]
    assert all(snapshots[0][name] == snapshots[1][name] for name in committed)
    verdict = json.loads(snapshots[0]["verdict.json"])
    assert "time_s" not in verdict
    assert "wall" not in snapshots[0]["REPORT.md"].decode().lower().replace("wall times: `timings.md`", "")
    assert name in (tmp_path / "TIMINGS.md").read_text()


def test_vacuous_verdict_never_passes_and_is_marked(tmp_path: Path) -> None:
    vacuous = Verdict("groups compared", "0 vs 0", "strictly larger", True, vacuous=True)
    assert vacuous.passed is False
    document = {"name": "x", "passed": False, "claims": [{**vacuous.__dict__}], "params": {}, "full": False,
                "device": "cpu", "seed": 0, "files": []}
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "verdict.json").write_text(json.dumps(document))
    report = write_report(tmp_path).read_text()
    assert "**FAIL (vacuous)**" in report and "**0 of 1 claims pass** (1 of the failures vacuous)." in report


def test_reproduce_task_runs_from_the_cli_and_reports_its_verdicts(tmp_path: Path) -> None:
    """`hopbench experiment=repro_<name>` writes verdict.json, the figure and results.json, and the summary table
    shows the reproduction's verdicts, not the settings of the base network it does not use."""
    proc = subprocess.run([sys.executable, "-m", "hopbench.app.cli", "experiment=repro_prop1",
                           "task.params=${task.tiny_params}", "logger=none"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    verdict = json.loads((tmp_path / "reproductions" / "prop1" / "verdict.json").read_text())
    (results_file,) = tmp_path.glob("outputs/**/results.json")
    results = json.loads(results_file.read_text())
    assert results["status"] == "ok" and results["task"] == "reproduce"
    assert results["metrics"]["claims"] == len(verdict["claims"])
    assert results["metrics"]["passed"] == verdict["passed"]
    figure = tmp_path / "reproductions" / "prop1" / "prop1.png"
    assert results["figures"] == ["prop1_prop1.png"]  # the run holds the reproduction's figure, byte for byte
    assert (results_file.parent / "prop1_prop1.png").read_bytes() == figure.read_bytes()
    table = proc.stdout[proc.stdout.rindex("== reproduce"):]
    assert "prop1" in table and "hebbian" not in table and "tanh" not in table


def test_training_reproduction_puts_its_curves_and_figures_in_the_run(offline_wandb: Path) -> None:
    """`hopbench experiment=repro_training` (wandb offline): the comparison, training-curve and dead-neuron figures
    are in the Hydra run's folder and its wandb run, and every trained run's validation curve reaches wandb
    against its own training step (define_metric), value for value as in training_steps.csv."""
    from tests.test_app import wandb_records

    out, reproductions = offline_wandb / "run", offline_wandb / "reproductions"
    results = run_inprocess(["experiment=repro_training", "task.params=${task.tiny_params}", "logger=wandb",
                             f"task.out={reproductions}"], out)
    assert results["status"] == "ok", results.get("error")
    figures = {"training_comparison.png", "training_training_curves.png", "training_dead_neurons.png"}
    assert figures <= set(results["figures"])
    assert all((out / f).stat().st_size > 0 for f in figures)
    steps = pd.read_csv(reproductions / "training" / "training_steps.csv")
    records = wandb_records(next(out.rglob("run-*.wandb")))
    axes = {r.metric.glob_name: r.metric.step_metric for r in records if r.WhichOneof("record_type") == "metric"}
    logged = [{i.key or "/".join(i.nested_key): i.value_json for i in r.history.item} for r in records
              if r.WhichOneof("record_type") == "history"]
    keys = {key for h in logged for key in h}  # an image's fields are nested under its key
    assert all(any(k.startswith(f"figures/{f.removesuffix('.png')}/") for k in keys) for f in figures)
    runs = steps.groupby(["dataset", "P", "weights"], sort=False)
    assert len(runs) >= 9
    for (dataset, n_patterns, weights), rows in runs:
        prefix = f"train/{dataset}_P{n_patterns}_{weights}"
        assert axes[f"{prefix}/*"] == f"{prefix}/step"
        curve = [h for h in logged if f"{prefix}/val_accuracy" in h]
        assert [int(h[f"{prefix}/step"]) for h in curve] == rows["step"].tolist()
        # the CSV holds 10 significant digits
        assert [float(h[f"{prefix}/val_accuracy"]) for h in curve] == pytest.approx(rows["val_accuracy"].tolist(),
                                                                                    rel=1e-9)
