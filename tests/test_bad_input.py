"""Bad input: every bad value is one line naming the key and what is allowed, raised before any job runs — for
every job of a sweep, axes of hydra.sweeper.params included. Property-based tests draw valid compositions (each
runs to a status) and invalid values for every key (each gives its one-line error)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from hopbench.app.cli import preflight
from hopbench.app.compose import compose_config, job_from_config
from hopbench.app.configs import GROUPS, option_names
from hopbench.errors import ConfigError
from tests.conftest import compose_hydra, run_inprocess

BAD_INPUTS = [
    (["activation=foo"], r"^activation='foo': unknown option \(allowed: gelu, .*tanh, threshold_linear\)$"),
    (["n_neurons=0"], r"^n_neurons=0: must be an integer ≥ 1$"),
    (["n_neurons=-3"], r"^n_neurons=-3: must be an integer ≥ 1$"),
    (["n_neurons=1.5"], r"^n_neurons='1\.5': must be an integer$"),
    (["load=0"], r"^load=0(\.0)?: must be a number > 0$"),
    (["load=-0.1"], r"^load=-0\.1: must be a number > 0$"),
    (["load=abc"], r"^load='abc': must be a number$"),
    (["load=50"], r"^load=50(\.0)?: .*Gardner"),
    (["activation.beta=abc"], r"^activation\.beta='abc': must be a number$"),
    (["activation.beta=-1"], r"^activation\.beta=-1(\.0)?: must be a number > 0$"),
    (["task=train", "task.lr=abc"], r"^task\.lr='abc': must be a number$"),
    (["solver.rtol=abc"], r"^solver\.rtol='abc': must be a number$"),
    (["solver.rtol=-1"], r"^solver\.rtol=-1(\.0)?: must be a number > 0$"),
    (["cue.level=abc"], r"^cue\.level='abc': must be a number$"),
    (["cue.level=1.5"], r"^cue\.level=1\.5: must be a number in \[0, 1\]$"),
    (["weights=pseudoinverse", "weights.ridge=abc"], r"^weights\.ridge='abc': must be a number$"),
    (["weights=pseudoinverse", "weights.ridge=-1"], r"^weights\.ridge=-1(\.0)?: must be a number ≥ 0$"),
    (["stability.tol=abc"], r"^stability\.tol='abc': must be a number$"),
    (["stability.tol=-1"], r"^stability\.tol=-1(\.0)?: must be a number in \(0, 1\)$"),
    (["lyapunov.tol=-1"], r"^lyapunov\.tol=-1(\.0)?: must be a number in \[0, 1\)$"),
    (["end_states.cluster_distance=0"], r"^end_states\.cluster_distance=0(\.0)?: must be a number > 0$"),
    (["bias.value=abc"], r"^bias\.value='abc': must be a number$"),
    (["bias.kind=huge"], r"^bias\.kind='huge': unknown option \(allowed: constant, random, zero\)$"),
    (["compare=maybe"], r"^compare='maybe': must be a boolean \(true or false\)$"),
    (["task=critical_load", "task.loads=abc"], r"^task\.loads='abc': must be a list"),
    (["task=critical_load", "task.loads=[0.5,-1]"], r"^task\.loads=-1(\.0)?: must be a number > 0$"),
    (["task=capacity", "task.level=2"], r"^task\.level=2(\.0)?: must be a number in \(0, 1\]$"),
    (["task=capacity", "task.p_min=5", "task.p_max=2"], r"^task\.p_max=2: must be an integer ≥ 5$"),
    (["threads=0"], r"^threads=0: must be an integer ≥ 1$"),
    (["weights=pseudoinverse", "n_patterns=150"], r"^n_patterns=150: weights=pseudoinverse stores at most N = 100"),
    (["dataset=npz", "dataset.path=/no/such/file.npz"], r"^dataset\.path='/no/such/file\.npz': no such \.npz file$"),
    (["foo=1"], r"^foo='1': unknown config key \(allowed: .*n_neurons.*\)$"),
    (["activation.gain=2"], r"^activation\.gain='2': unknown config key for activation=tanh \(allowed: beta\)$"),
    (["n_patterns=10", "load=0.2"], r"^n_patterns=10: give n_patterns or load, not both"),
    (["-m", "model=original,bogus"], r"^model='bogus': unknown option \(allowed: modified, modified_y, original\)$"),
    (["model=original,modified"], r"^model='original,modified': a sweep needs --multirun \(-m\)$"),
    (["-m", "n_neurons=interval(1,10)"], r"^n_neurons='interval\(1,10\)': the basic sweeper takes lists"),
    (["model=modified", "energy=eq4"], r"^energy='eq4': is a function of the y-state; this model's state is u"),
    (["dataset=lognormal"], r"^cue='flip': needs binary \(±1 or \{0,1\}\) patterns; the dataset's are graded"),
    (["dataset=digits"], r"^n_neurons=100: dataset=digits has 64 features"),
    (["solver.method=rk45"], r"^solver\.method='rk45': unknown method"),
    (["device=tpu"], r"^device='tpu': unknown device \(allowed: auto, cpu, cuda\)$"),
    (["task=train", "task.objective=foo"], r"^task\.objective='foo': unknown option \(allowed: denoise, fixed_point\)"),
    (["task=train", "weights=bipartite"], r"^weights='bipartite': task=train needs every neuron to carry the patterns"),
    (["task=train", "task.epochs=3"], r"^task\.epochs='3': unknown config key for task=train \(allowed: adjoint, "),
    (["solver.backend=scipy"], r"^solver\.backend='scipy': unknown backend \(allowed: auto, rows, torchdiffeq\)$"),
    (["solver=rk4", "solver.backend=rows"], r"^solver\.method='rk4': not available with solver\.backend=rows"),
    (["n_neurons=1000000"], r"^n_neurons=1000000: this run needs about \d+(\.\d)? GiB .*more than the"),
    (["hydra.run.dir=/proc/x"], r"^hydra\.run\.dir='/proc/x': cannot create or write the output folder"),
    (["experiment=nope"], r"^experiment='nope': unknown option \(allowed: demo, "),
]


@pytest.mark.parametrize(("args", "pattern"), BAD_INPUTS)
def test_bad_input_is_one_line_naming_key_and_allowed(args: list[str], pattern: str) -> None:
    with pytest.raises(ConfigError) as info:
        preflight(args)
    message = str(info.value)
    assert "\n" not in message
    assert re.search(pattern, message), message


@pytest.mark.parametrize(("content", "pattern"), [
    ({"x": np.full((4, 10), np.nan)}, r"dataset\.path=.*holds 40 non-finite values"),
    ({"x": np.ones(10)}, r"dataset\.key='x': array has shape \(10,\), expected \(P, N\)"),
    ({"x": np.array([["a", "b"]])}, r"dataset\.key='x': array has dtype <U1, expected numbers"),
    ({}, r"dataset\.path=.*holds no array"),
])
def test_npz_contents_are_checked_before_compute(content: dict, pattern: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **content)
    with pytest.raises(ConfigError, match=pattern):
        preflight(["dataset=npz", f"dataset.path={path}", "n_neurons=10", "n_patterns=2"])


def test_a_whole_sweep_is_checked_before_any_job() -> None:
    assert preflight(["-m", "model=original,modified", "activation=relu,tanh", "logger=none"]) == 4
    with pytest.raises(ConfigError, match=r"n_neurons=-1"):
        preflight(["-m", "n_neurons=20,-1", "logger=none"])


def test_axes_in_hydra_sweeper_params_are_checked() -> None:
    """The axes an experiment sets in hydra.sweeper.params (every make sweep-*) are expanded like Hydra does."""
    assert preflight(["-m", "experiment=sweep_capacity", "logger=none"]) == 9
    with pytest.raises(ConfigError, match=r"^n_neurons=-5: must be an integer ≥ 1$"):
        preflight(["-m", "experiment=sweep_capacity", "hydra.sweeper.params.n_neurons='100,-5'", "logger=none"])
    with pytest.raises(ConfigError, match=r"^activation='bogus': unknown option"):
        preflight(["-m", "experiment=sweep_activations", "hydra.sweeper.params.activation='relu,bogus'"])


def test_glob_and_optuna_search_spaces_are_checked() -> None:
    assert preflight(["-m", "activation=glob(*)", "logger=none"]) == len(option_names("activation"))
    assert preflight(["-m", "hparams_search=modified_retrieval", "logger=none"]) == 20  # Optuna's n_trials
    with pytest.raises(ConfigError, match=r"^load=-1(\.0)?: must be a number > 0$"):
        preflight(["-m", "hparams_search=modified_retrieval", "hydra.sweeper.params.load='interval(-1,0.2)'"])


def test_help_and_cfg_skip_the_preflight() -> None:
    assert preflight(["--help"]) == 0
    assert preflight(["--cfg", "job"]) == 0


# property-based ----------------------------------------------------------------------------------------------------
U_ENERGIES = ["auto", "e1", "e2", "e3", "combined"]
Y_ENERGIES = {"original": ["auto", "eq4", "eq14"], "modified_y": ["auto", "eq14"]}
STRATEGIES = {"original": ["auto"], "modified": ["auto", "identity", "w", "polar", "i_minus_wt_lambda", "lambda"],
              "modified_y": ["auto", "y_i_minus_lambda_wt", "y_i_minus_w_lambda"]}
DATA = {"random_binary": "flip", "sparse_binary": "flip", "gaussian": "gaussian", "lognormal": "mask"}


@st.composite
def compositions(draw: st.DrawFn) -> list[str]:
    model = draw(st.sampled_from(sorted(STRATEGIES)))
    energy = draw(st.sampled_from(U_ENERGIES if model == "modified" else Y_ENERGIES[model]))
    dataset = draw(st.sampled_from(sorted(DATA)))
    return [f"model={model}", f"strategy={draw(st.sampled_from(STRATEGIES[model]))}", f"energy={energy}",
            f"activation={draw(st.sampled_from(['tanh', 'sigmoid', 'relu', 'smooth_leaky_relu', 'softmax']))}",
            f"weights={draw(st.sampled_from(['hebbian', 'pseudoinverse', 'storkey', 'goe', 'hierarchical']))}",
            f"dataset={dataset}", f"cue={DATA[dataset]}", f"n_neurons={draw(st.integers(4, 12))}",
            f"seed={draw(st.integers(0, 3))}"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=compositions())
def test_every_valid_composition_runs_to_a_status(overrides: list[str], tmp_path_factory: pytest.TempPathFactory
                                                 ) -> None:
    out = tmp_path_factory.mktemp("run")
    results = run_inprocess([*overrides, "logger=none", "retrieval.n_cues=2", "spurious.n_states=6",
                             "lyapunov.n_states=6", "stability.max_points=3", "solver.t_max=20"], out)
    assert results["status"] == "ok", results.get("error")
    metrics = results["metrics"]
    assert sum(metrics["retrieval_end_state_counts"].values()) == sum(metrics["status_counts"].values())
    assert sum(metrics["random_end_state_counts"].values()) == 6


#: what an option needs beside it to compose (its model, a cue for graded data, the digits' size)
MODEL_FOR = {**{("energy", e): ["model=modified"] for e in ("e1", "e2", "e3", "combined")},
             ("energy", "eq14"): ["model=modified_y"],
             **{("strategy", s): ["model=modified"] for s in ("w", "polar", "lyapunov_equation", "i_minus_wt_lambda",
                                                            "lambda", "polar_f", "identity")},
             **{("strategy", s): ["model=modified_y"] for s in ("y_i_minus_w_lambda", "y_i_minus_lambda_wt")},
             ("dataset", "gaussian"): ["cue=gaussian"], ("dataset", "lognormal"): ["cue=gaussian"],
             ("dataset", "digits"): ["n_neurons=64"]}


def _numeric_keys() -> list[tuple[list[str], str]]:
    """(context overrides, key) for every numeric or boolean key of every option and of the top level."""
    out = []
    for group in [*GROUPS, "solver"]:
        for option in option_names(group):
            context = [f"{group}={option}", *MODEL_FOR.get((group, option), [])]
            node = compose_hydra(context)[group]
            for key, value in OmegaConf.to_container(node).items():
                if isinstance(value, int | float) and not key.startswith("_"):
                    out.append((context, f"{group}.{key}"))
    cfg = compose_hydra([])
    for key in ("n_neurons", "seed", "compare", "load"):
        out.append(([], key))
    for section in ("retrieval", "spurious", "stability", "lyapunov", "end_states", "bias"):
        out += [([], f"{section}.{k}") for k, v in OmegaConf.to_container(cfg[section]).items()
                if isinstance(v, int | float) and not k.startswith("_")]
    return out


NUMERIC_KEYS = _numeric_keys()
SIZE_KEYS = ("n_patterns", "n_neurons", "load")


@settings(max_examples=150, deadline=None)
@given(case=st.sampled_from(NUMERIC_KEYS),
       value=st.one_of(st.text(alphabet="abcxyz", min_size=1, max_size=4), st.floats(allow_nan=True),
                       st.integers(-10**6, 10**6)))
def test_any_value_of_any_key_is_accepted_or_refused_in_one_line(case: tuple[list[str], str], value: object) -> None:
    """A value drawn at random for any key either composes into a checked job or is refused with one line that
    names that key (never a traceback, never another key's name)."""
    context, key = case
    group, _, name = key.rpartition(".")
    options = {o.split("=")[0]: o.split("=")[1] for o in context}
    params = {name: value} if not group else {}
    if group:
        options[f"{group}_params" if group in options or group in GROUPS or group == "solver" else group] = {
            name: value}
    try:
        job_from_config(compose_config(**options, **params), explicit=set(params))
    except ConfigError as err:
        assert "\n" not in str(err)
        if isinstance(value, str):  # a type error names the key it was given to
            assert err.key == key, str(err)
        else:  # a range error names that key, a key of the same option, or a size the value decides
            assert err.key == key or err.key.rpartition(".")[0] == group or err.key in SIZE_KEYS or not group, str(err)
