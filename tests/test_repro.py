"""Every reproduction runs at its tiny size (no figures) and writes verdicts computed from the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from hopbench.cli import CONF_DIR
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
