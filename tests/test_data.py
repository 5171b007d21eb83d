"""Data sets and corruptions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hopbench.core.data import DATASETS, build_dataset, corrupt
from hopbench.core.system import generator
from hopbench.errors import ConfigError


def make(name: str, P: int = 20, N: int = 64, seed: int = 0, **params: object):
    return build_dataset(name, params, n_patterns=P, n_neurons=N, generator=generator(seed, "patterns"))


@pytest.mark.parametrize("name", [n for n in DATASETS if n != "npz"])
def test_shapes_and_reproducibility(name: str) -> None:
    a, b, c = make(name), make(name), make(name, seed=1)
    assert a.patterns.shape == (20, 64) and a.patterns.dtype == torch.float64
    torch.testing.assert_close(a.patterns, b.patterns)
    assert not torch.equal(a.patterns, c.patterns)
    states = a.sample(7, generator(0, "states"))
    assert states.shape == (7, 64)


def test_distributions() -> None:
    assert set(make("random_binary").patterns.unique().tolist()) == {-1.0, 1.0}
    sparse = make("sparse_binary", P=200, N=200, coding_level=0.15)
    assert set(sparse.patterns.unique().tolist()) == {0.0, 1.0}
    assert float(sparse.patterns.mean()) == pytest.approx(0.15, abs=0.01)
    logn = make("lognormal", P=400, N=400, cv=2.0).patterns
    assert float(logn.min()) > 0
    assert float(logn.mean()) == pytest.approx(1.0, rel=0.05)
    assert float(logn.std() / logn.mean()) == pytest.approx(2.0, rel=0.15)


def test_digits_are_the_bundled_images() -> None:
    from sklearn.datasets import load_digits

    d = make("digits", P=10)
    rows = {tuple(np.where(r > 8, 1.0, -1.0)) for r in load_digits().data}
    assert all(tuple(p.tolist()) in rows for p in d.patterns)
    graded = make("digits", P=5, mode="graded").patterns
    assert float(graded.min()) >= 0 and float(graded.max()) <= 1
    with pytest.raises(ConfigError, match=r"n_neurons=100: dataset=digits has 64 features"):
        make("digits", N=100)


def test_npz(tmp_path) -> None:
    arr = np.random.default_rng(0).normal(size=(30, 16))
    np.savez(tmp_path / "pats.npz", x=arr, y=arr[:5])
    d = make("npz", P=10, N=16, path=str(tmp_path / "pats.npz"), key="x")
    assert d.patterns.shape == (10, 16)
    assert {tuple(r.tolist()) for r in d.patterns} <= {tuple(r) for r in arr}
    with pytest.raises(ConfigError, match=r"dataset\.path='.*missing\.npz': no such \.npz file"):
        make("npz", P=10, N=16, path=str(tmp_path / "missing.npz"))
    with pytest.raises(ConfigError, match=r"dataset\.key='z'.*allowed: x, y"):
        make("npz", P=10, N=16, path=str(tmp_path / "pats.npz"), key="z")
    with pytest.raises(ConfigError, match=r"n_patterns=40: dataset=npz holds only 30"):
        make("npz", P=40, N=16, path=str(tmp_path / "pats.npz"))


def test_flip_exact_count() -> None:
    d = make("random_binary", P=50, N=100)
    cues = corrupt("flip", {"level": 0.07}, d.patterns, d.kind, generator(0, "cues"))
    assert bool(((cues != d.patterns).sum(-1) == 7).all())
    sparse = make("sparse_binary", P=50, N=100)
    cues = corrupt("flip", {"level": 0.1}, sparse.patterns, sparse.kind, generator(0, "cues"))
    assert set(cues.unique().tolist()) <= {0.0, 1.0}
    assert bool(((cues != sparse.patterns).sum(-1) == 10).all())


def test_mask_and_gaussian() -> None:
    d = make("lognormal", P=10, N=50)
    masked = corrupt("mask", {"level": 0.2}, d.patterns, d.kind, generator(0, "c"))
    assert bool(((masked == 0).sum(-1) == 10).all())
    mean_fill = corrupt("mask", {"level": 0.2, "fill": "mean"}, d.patterns, d.kind, generator(0, "c"))
    assert bool(((mean_fill != d.patterns).sum(-1) == 10).all())
    noisy = corrupt("gaussian", {"level": 0.5}, d.patterns, d.kind, generator(0, "c"))
    ratio = float((noisy - d.patterns).std() / d.patterns.std())
    assert ratio == pytest.approx(0.5, rel=0.15)


def test_flip_on_graded_data_is_rejected() -> None:
    d = make("lognormal")
    with pytest.raises(ConfigError, match=r"cue='flip': needs binary .*allowed: gaussian, mask"):
        corrupt("flip", None, d.patterns, d.kind, generator(0, "c"))
