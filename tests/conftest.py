"""Shared fixtures. Set HOPBENCH_TEST_DEVICE=cuda to run the engine tests on a GPU."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from hopbench.core.activations import build_activation
from hopbench.core.network import Network

DEVICE = torch.device(os.environ.get("HOPBENCH_TEST_DEVICE", "cpu"))
F64 = torch.float64
ROOT = Path(__file__).resolve().parent.parent


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python: os.environ, the repository first on PYTHONPATH (a PYTHONPATH already
    set, e.g. a folder of extra packages, is kept after it) and ``extra``."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


@pytest.fixture
def device() -> torch.device:
    return DEVICE


def bipolar(P: int, N: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 2, (P, N), generator=gen).to(F64) * 2 - 1).to(DEVICE)


def hebbian_net(P: int, N: int, activation: str = "tanh", params: dict | None = None, seed: int = 0,
                bias: float = 0.0) -> tuple[Network, torch.Tensor]:
    """Zero-diagonal Hebbian network (float64, on the test device) and its ±1 patterns (P, N)."""
    X = bipolar(P, N, seed)
    W = X.T @ X / N
    W.fill_diagonal_(0.0)
    b = torch.full((N,), bias, dtype=F64, device=DEVICE)
    return Network(W, b, build_activation(activation, params)), X


def relu_memory(P: int, N: int, seed: int = 0):
    """A symmetric ReLU memory with dead neurons: {0,1} patterns with exactly 0.3N ones, W = 1.2 XX⁺ − 11ᵀ/N,
    b = 0.1. Every pattern is an exact fixed point (y = W a + b) with silent neurons at y = −0.2 (dead).
    Returns the float64 System."""
    from hopbench import compose

    return compose(model="original", activation="relu", weights="pseudoinverse",
                   weights_params={"scale": 1.2, "inhibition": 1.0}, dataset="sparse_binary",
                   dataset_params={"coding_level": 0.3, "exact": True}, bias={"kind": "constant", "value": 0.1},
                   n_neurons=N, n_patterns=P, seed=seed, device=str(DEVICE), dtype="float64")


def random_net(N: int, activation: str, symmetric: bool, seed: int = 0, scale: float = 1.0,
               params: dict | None = None) -> Network:
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(N, N, generator=gen, dtype=F64) * scale / N**0.5
    W = (A + A.T) / 2**0.5 if symmetric else A
    b = 0.1 * torch.randn(N, generator=gen, dtype=F64)
    return Network(W.to(DEVICE), b.to(DEVICE), build_activation(activation, params))


def randn(*shape: int, seed: int = 1, scale: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=gen, dtype=F64)).to(DEVICE)


def compose_hydra(overrides: list[str], *, hydra_node: bool = False):
    """The config the ``hopbench`` command composes for ``overrides`` (Hydra's compose API, in this process)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from hopbench.app.configs import register

    register()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="hopbench.conf", version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=hydra_node)


def run_inprocess(overrides: list[str], out: Path) -> dict:
    """Run one job as the ``hopbench`` command would (Hydra config, HydraConfig set, hopbench.app.runner.run_job)
    in this process, so that coverage sees the application; returns its results.json."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from hopbench.app.runner import run_job

    cfg = compose_hydra(overrides, hydra_node=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    run_job(cfg)
    return json.loads((out / "results.json").read_text())


@pytest.fixture
def offline_wandb(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """wandb offline into ``tmp_path`` for one test. wandb announces its service to child processes in
    WANDB_SERVICE: the service is stopped and the variable restored afterwards, or a later subprocess would log
    through this process's service."""
    import wandb

    for key, value in {"WANDB_MODE": "offline", "WANDB_DIR": tmp_path, "WANDB_CACHE_DIR": tmp_path / "cache",
                       "WANDB_CONFIG_DIR": tmp_path / "config", "WANDB_SILENT": "true"}.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    yield tmp_path
    wandb.teardown()
