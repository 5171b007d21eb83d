"""Every reproduction runs at its tiny size (no figures) and writes verdicts computed from the run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from hopbench.app.cli import CONF_DIR
from hopbench.repro import MODULES, Context, reproduce, write_report
from tests.conftest import DEVICE


def tiny_params(name: str) -> dict:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment=repro_{name}"])
    assert cfg.task.name == "reproduce" and cfg.task.which == name
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
    assert f"**{passed} of {len(document['claims'])} claims pass.**" in report
    rows = [line for line in report.splitlines() if line.startswith("| [")]
    assert all(len(re.findall(r"(?<!\\)\|", row)) == 6 for row in rows)  # |ΔE| in a claim stays in its cell


def test_reproduce_task_runs_from_the_cli_and_reports_its_verdicts(tmp_path: Path) -> None:
    """`hopbench experiment=repro_<name>` writes verdict.json, the figure and results.json, and the summary table
    shows the reproduction's verdicts, not the settings of the base network it does not use."""
    proc = subprocess.run([sys.executable, "-m", "hopbench.app.cli", "experiment=repro_prop1",
                           "task.params=${task.tiny_params}", "logger=none"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
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


def test_training_reproduction_puts_its_curves_and_figures_in_the_run(tmp_path: Path) -> None:
    """`hopbench experiment=repro_training` (wandb offline): the comparison, training-curve and dead-neuron figures
    are in the Hydra run's folder and its wandb run, and every trained run's validation curve reaches wandb
    against its own training step (define_metric), value for value as in training_steps.csv."""
    from tests.test_app import wandb_records

    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "hopbench.app.cli", "experiment=repro_training",
                           "task.params=${task.tiny_params}", "logger=wandb"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (results_file,) = tmp_path.glob("outputs/**/results.json")
    run_dir = results_file.parent
    figures = {"training_comparison.png", "training_training_curves.png", "training_dead_neurons.png"}
    assert figures <= set(json.loads(results_file.read_text())["figures"])
    assert all((run_dir / f).stat().st_size > 0 for f in figures)
    steps = pd.read_csv(tmp_path / "reproductions" / "training" / "training_steps.csv")
    (log,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    records = wandb_records(log)
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
        assert [float(h[f"{prefix}/val_accuracy"]) for h in curve] == rows["val_accuracy"].tolist()
