"""``hopbench``: the Hydra app, behind a pre-flight check of every job of the command line.

The pre-flight composes each job of a (multi)run with Hydra's compose API and validates it, so bad input
is one line naming the key and what is allowed, with exit code 2, before any job starts.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from hopbench.app.settings import settings_from_config
from hopbench.errors import ConfigError

__all__ = ["CONF_DIR", "GROUPS", "main", "preflight"]

CONF_DIR = Path(__file__).resolve().parent.parent.parent / "conf"
GROUPS = ("model", "activation", "strategy", "energy", "weights", "dataset", "cue", "solver", "task", "logger",
          "experiment")
#: Hydra's own flags; those in VALUE_FLAGS take the next argument
SKIP_FLAGS = {"--help", "-h", "--hydra-help", "--version", "--info", "-i", "--shell-completion", "-sc"}
VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir",
               "-cd", "--experimental-rerun"}
MAX_PREFLIGHT_JOBS = 2000


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


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
        elif flag in VALUE_FLAGS:
            value = arg.split("=", 1)[1] if "=" in arg else next(args, "")
            if flag in ("--config-name", "-cn"):
                config_name = value
        elif not arg.startswith("-"):
            overrides.append(arg)
    return overrides, multirun, skip, config_name


def _job_strings(override: Override) -> list[str]:
    key = override.get_key_element()
    if override.type == OverrideType.DEL:
        return [key]
    if override.is_sweep_override():
        return [f"{key}={v}" for v in override.sweep_string_iterator()]
    return [f"{key}={override.get_value_element_as_str()}"]


def _check_groups(parsed: list[Override]) -> None:
    for override in parsed:
        group = override.key_or_group
        if group in GROUPS and override.type != OverrideType.DEL:
            values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [
                override.get_value_element_as_str()]
            options = _options(group)
            for value in values:
                if value not in options and not (group == "experiment" and value == "null"):
                    raise ConfigError(group, value, "unknown option", allowed=options)


def _unknown_key(err: Exception, base: DictConfig) -> ConfigError | None:
    """Turn Hydra's 'Could not override' error into a one-line ConfigError with the allowed keys."""
    text = str(err)
    marker = "Could not override '"
    if marker not in text:
        return None
    key = text.split(marker, 1)[1].split("'", 1)[0]
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(base, parent) if parent else base
    allowed = sorted(str(k) for k in node) if isinstance(node, DictConfig) else None
    where = f" for {parent}={node.get('name')}" if isinstance(node, DictConfig) and "name" in node else ""
    value = text.split("=", 1)[1].split("'", 1)[0] if "=" in text else leaf
    return ConfigError(key, value, f"unknown config key{where} (to add a new key use +{key}=...)", allowed=allowed)


def preflight(argv: Sequence[str]) -> int:
    """Validate every job of the command line; return the number of jobs checked (0 when skipped)."""
    overrides, multirun, skip, config_name = _split(argv)
    if skip:
        return 0
    parsed = OverridesParser.create().parse_overrides([o for o in overrides if not o.startswith(("hydra", "+hydra"))])
    sweeps = [o for o in parsed if o.is_sweep_override()]
    if sweeps and not multirun:
        raise ConfigError(sweeps[0].get_key_element(), ",".join(sweeps[0].sweep_string_iterator()),
                          "a sweep needs --multirun (-m)")
    _check_groups(parsed)
    jobs = list(itertools.islice(itertools.product(*[_job_strings(o) for o in parsed]), MAX_PREFLIGHT_JOBS))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for job in jobs:
            try:
                cfg = compose(config_name, overrides=list(job))
            except HydraException as err:
                # the job's group choices (validated above) say which keys exist, e.g. under task=train
                context = compose(config_name, overrides=[o for o in job if o.split("=", 1)[0] in GROUPS])
                raise _unknown_key(err, context) or ConfigError("overrides", " ".join(job),
                                                                str(err).splitlines()[0]) from None
            from hopbench.app.runner import explicit_keys

            settings_from_config(cfg, explicit=explicit_keys(list(job)))
    GlobalHydra.instance().clear()
    return len(jobs)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _app(cfg: DictConfig) -> None:
    from hopbench.app.runner import run_job

    run_job(cfg)


def main() -> None:
    """Console entry point ``hopbench``."""
    try:
        preflight(sys.argv[1:])
    except ConfigError as err:
        print(f"hopbench: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    _app()


if __name__ == "__main__":
    main()
