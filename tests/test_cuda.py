"""The CUDA code paths give the CPU's results: retrieval, the stability analysis (both spectrum routes) and the
capacity search run on a GPU and are compared with the same computation on the CPU.

These run wherever CUDA exists (whatever HOPBENCH_TEST_DEVICE says) and are skipped elsewhere.
"""

from __future__ import annotations

import pytest
import torch

from hopbench.analysis.capacity import CapacityConfig, RetrievalTrial, search
from hopbench.analysis.metrics import retrieval, stability_at_patterns
from hopbench.analysis.stability import StabilityConfig
from hopbench.app.compose import compose
from hopbench.core.data import Flip
from hopbench.core.system import System
from hopbench.solve import SolverConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")

CUE = Flip(level=0.05)
SOLVER = SolverConfig()


def pair(**kwargs: object) -> dict[str, System]:
    """The same memory on the CPU and on the GPU (float64: the comparison is about the code, not rounding)."""
    base = {"model": "original", "activation": "tanh", "activation_params": {"beta": 4.0}, "n_neurons": 128,
            "load": 0.08, "seed": 3, "dtype": "float64", **kwargs}
    return {device: compose(device=device, **base) for device in ("cpu", "cuda")}


def test_retrieval_on_cuda_matches_cpu() -> None:
    systems = pair()
    assert systems["cuda"].device.type == "cuda" and systems["cuda"].net.W.is_cuda
    out = {d: retrieval(s, s.model, CUE, SOLVER, n_cues=4, threshold=0.95) for d, s in systems.items()}
    cpu, gpu = (out[d].tables["retrieval"] for d in ("cpu", "cuda"))
    assert (cpu["success"] == gpu["success"]).all()
    assert (cpu["status"] == gpu["status"]).all()
    assert float((cpu["overlap"] - gpu["overlap"]).abs().max()) < 1e-6
    assert out["cuda"].scalars["retrieval_accuracy"] == out["cpu"].scalars["retrieval_accuracy"]


@pytest.mark.parametrize("spectrum", ["full", "extremal"])
@pytest.mark.parametrize(("model", "strategy"), [("original", "identity"), ("modified", "i_minus_wt_lambda")])
def test_stability_on_cuda_matches_cpu(spectrum: str, model: str, strategy: str) -> None:
    systems = pair(model=model, strategy=strategy)
    config = StabilityConfig(spectrum=spectrum)
    cpu, gpu = (stability_at_patterns(s, s.model, SOLVER, config, max_points=32, threshold=0.95, keep_spectra=4)
                for s in systems.values())
    reference = stability_at_patterns(systems["cpu"], systems["cpu"].model, SOLVER, StabilityConfig(spectrum="full"),
                                      max_points=32, threshold=0.95)
    a, b, ref = cpu.tables["stability"], gpu.tables["stability"], reference.tables["stability"]
    for column in ("jacobian_verdict", "energy_verdict", "stored"):
        assert (a[column] == b[column]).all() and (b[column] == ref[column]).all(), column
    assert float((a["max_real"] - ref["max_real"]).abs().max()) <= float(a["max_real_error"].max()) + 1e-8
    assert float((b["max_real"] - ref["max_real"]).abs().max()) <= float(b["max_real_error"].max()) + 1e-8
    torch.testing.assert_close(gpu.extras["spectra"], cpu.extras["spectra"], rtol=1e-8, atol=1e-8)
    for key in ("stable_fraction", "energy_certified_fraction", "energy_inconclusive_fraction", "dead_fraction",
                "stored_fraction"):
        assert gpu.scalars[key] == pytest.approx(cpu.scalars[key]), key


def test_capacity_search_on_cuda_matches_cpu() -> None:
    def run(device: str):
        trial = RetrievalTrial(lambda P: compose(model="original", activation="tanh", activation_params={"beta": 20.0},
                                                 n_neurons=80, n_patterns=P, seed=1, device=device,
                                                 dtype="float64"),
                               CUE, SOLVER, n_cues=5, threshold=0.95)
        return search(trial, n_neurons=80, config=CapacityConfig(chunk=32))

    cpu, gpu = run("cpu"), run("cuda")
    assert gpu.alpha == cpu.alpha and gpu.bracket == cpu.bracket
    assert [(p.n_patterns, p.passed, p.successes, p.cues_used) for p in gpu.points] == \
        [(p.n_patterns, p.passed, p.successes, p.cues_used) for p in cpu.points]
