"""``hopbench``: the Hydra app, behind a pre-flight check of every job of the command line.

The pre-flight expands the command line into jobs exactly as Hydra's sweeper will (its own parser and
``BasicSweeper.split_arguments``, axes from ``hydra.sweeper.params`` included; for other sweepers, every value
or bound of their search space), composes each job with Hydra's compose API and builds its checked
:class:`~hopbench.app.job.Job`. Bad input is one line naming the key and what is allowed, with exit code 2,
before any job starts. A multirun that would use Hydra's basic sweeper uses its resumable form
(``hydra/sweeper=resumable``, :mod:`hopbench.app.sweep`; ``hydra/sweeper=basic`` on the command line keeps the
plain one). After a multirun the command exits 1 when any job did not finish ok, naming them.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig

from hopbench.app.compose import CONFIG_MODULE, config_errors, explicit_keys, job_from_config
from hopbench.app.configs import register
from hopbench.app.sweep import EXPECTED, OUTCOME, RESUMABLE
from hopbench.errors import ConfigError

__all__ = ["main", "preflight"]

log = logging.getLogger("hopbench")

#: Hydra's own flags; those in VALUE_FLAGS take the next argument
SKIP_FLAGS = {"--help", "-h", "--hydra-help", "--version", "--info", "-i", "--shell-completion", "-sc", "--cfg",
              "-c", "--resolve"}
VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir",
               "-cd", "--experimental-rerun"}
MAX_PREFLIGHT_JOBS = 2000
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
RESUMABLE_PLUGIN = "hydra_plugins.hopbench_resumable_sweeper"
#: sweepers that expand the command line as the basic sweeper does
BASIC_SWEEPERS = (BASIC_SWEEPER, f"{RESUMABLE_PLUGIN}.ResumableSweeper")


def _split(argv: Sequence[str]) -> tuple[list[str], bool, bool, str]:
    """(overrides, multirun, skip pre-flight, config name)."""
    overrides, multirun, skip, config_name = [], False, False, "config"
    args = iter(argv)
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in ("--multirun", "-m"):
            multirun = True
        elif flag in SKIP_FLAGS:
            skip = True
        if flag in VALUE_FLAGS:
            value = arg.split("=", 1)[1] if "=" in arg else next(args, "")
            if flag in ("--config-name", "-cn"):
                config_name = value
        elif not arg.startswith("-"):
            overrides.append(arg)
    return overrides, multirun, skip, config_name


def _axis_values(override: Override) -> list[str]:
    """Values to check on one sweep axis: every value of a discrete sweep, the bounds of an interval."""
    key = override.get_key_element()
    if override.is_discrete_sweep():
        return [f"{key}={v}" for v in override.sweep_string_iterator()]
    bounds = override.value()
    return [f"{key}={bounds.start}", f"{key}={bounds.end}"]  # interval(a, b)


def _jobs(primary: DictConfig, overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists of the jobs Hydra will launch (for other sweepers: one job per checked value)."""
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    if not multirun:
        return [overrides]
    sweeper = primary.hydra.sweeper
    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    parsed = parser.parse_overrides([*params, *overrides])
    if sweeper.get("_target_") in BASIC_SWEEPERS:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        batches = BasicSweeper.split_arguments(parsed, None)
        return list(itertools.islice((job for batch in batches for job in batch), MAX_PREFLIGHT_JOBS))
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    axes = [_axis_values(o) for o in parsed if o.is_sweep_override()]
    return [[*fixed, value] for axis in axes for value in axis] or [fixed]


def _check_writable(key: str, folder: str) -> None:
    """A ConfigError when the output folder cannot be created or written (its nearest existing parent)."""
    path = Path(folder).expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    try:  # a real write: permission bits say nothing for root or for /proc
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError:
        raise ConfigError(key, folder, f"cannot create or write the output folder ({existing} is not a writable "
                          "folder)") from None


def preflight(argv: Sequence[str]) -> int:
    """Check every job of the command line; return the number of jobs Hydra will launch (0 when skipped; for a
    sweeper that draws its jobs, its number of trials)."""
    overrides, multirun, skip, config_name = _split(argv)
    if skip:
        return 0
    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"), config_errors(overrides):
            parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
            parsed = parser.parse_overrides(overrides)
            sweeps = [o for o in parsed if o.is_sweep_override()]
            if sweeps and not multirun:
                raise ConfigError(sweeps[0].get_key_element(), sweeps[0].input_line.split("=", 1)[-1],
                                  "a sweep needs --multirun (-m)")
            plain = [o.input_line for o in parsed if not o.is_sweep_override()]
            primary = hydra.compose(config_name, overrides=plain, return_hydra_config=True)
            _check_writable("hydra.sweep.dir" if multirun else "hydra.run.dir",
                            primary.hydra.sweep.dir if multirun else primary.hydra.run.dir)
            jobs = _jobs(primary, overrides, multirun)
            for job in jobs:
                with config_errors(job):
                    cfg = hydra.compose(config_name, overrides=job)
                    job_from_config(cfg, explicit=explicit_keys(job))
            trials = primary.hydra.sweeper.get("n_trials") if multirun else None
            basic = not multirun or primary.hydra.sweeper.get("_target_") in BASIC_SWEEPERS
            EXPECTED["sweeper"] = primary.hydra.runtime.choices.get("hydra/sweeper") if multirun else None
    finally:
        GlobalHydra.instance().clear()
    return len(jobs) if basic or not trials else int(trials)


@hydra.main(config_path=f"pkg://{CONFIG_MODULE}", config_name="config", version_base="1.3")
def _app(cfg: DictConfig) -> float | None:
    from hopbench.app.runner import run_job

    return run_job(cfg)


def main() -> None:
    """Console entry point ``hopbench``."""
    EXPECTED.clear()
    try:
        EXPECTED["jobs"] = preflight(sys.argv[1:])
    except ConfigError as err:
        print(f"hopbench: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if (EXPECTED.get("sweeper") == "basic" and not any(a.startswith("hydra/sweeper=") for a in sys.argv[1:])
            and importlib.util.find_spec(RESUMABLE_PLUGIN) is not None):
        sys.argv.append(f"hydra/sweeper={RESUMABLE}")  # the basic sweeper, resumable (an explicit choice stays)
    register()
    OUTCOME.clear()
    _app()
    if OUTCOME.get("failed"):
        print(f"hopbench: {len(OUTCOME['failed'])} of {OUTCOME['jobs']} jobs did not finish ok:", file=sys.stderr)
        for path, status, error in OUTCOME["failed"]:
            print(f"  {status}: {path}: {error}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
