"""From names to objects: the Python API and the command line build from the same typed configs.

:func:`compose_config` composes exactly the config that ``hopbench key=value ...`` would (Hydra's compose API
over ``conf/config.yaml`` and the typed configs of :mod:`hopbench.app.configs`); :func:`job_from_config`
instantiates it into a checked :class:`~hopbench.app.job.Job`; :func:`compose` returns the
:class:`~hopbench.core.system.System` of a composition. Options may also be given as objects
(``compose(activation=Tanh(beta=2))``). Every error of composition or instantiation becomes one
:class:`~hopbench.errors.ConfigError` line naming the key.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import inspect
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import hydra
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, InstantiationException, MissingConfigException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from hopbench import threads
from hopbench.app.configs import GROUPS, HopbenchConfig, register
from hopbench.app.job import Job
from hopbench.core.system import System, SystemSpec, build_system, resolve_n_patterns
from hopbench.core.weights import Bias
from hopbench.errors import ConfigError, number

__all__ = ["CONFIG_MODULE", "OPTION_KEYS", "compose", "compose_config", "compose_spec", "config_errors",
           "default_choices", "explicit_keys", "job_from_config", "system_spec"]

CONFIG_MODULE = "hopbench.conf"
#: keys that select a config group option (a name) or take an option object in :func:`compose`
OPTION_KEYS = (*GROUPS, "solver")
_SYSTEM_GROUPS = ("model", "activation", "strategy", "energy", "weights", "dataset")
#: the keys :func:`compose` takes for a system
_SYSTEM_KEYS = (*_SYSTEM_GROUPS, "bias", "n_neurons", "n_patterns", "load", "seed", "device", "dtype", "cue_map")
_TOP_LEVEL = tuple(k for k in HopbenchConfig.__dataclass_fields__ if k not in (*GROUPS, "solver"))


def explicit_keys(overrides: list[str]) -> set[str]:
    """Top-level keys given on the command line (``n_patterns=10`` → {"n_patterns"})."""
    return {o.split("=", 1)[0].lstrip("+~").split(".")[0] for o in overrides if "=" in o}


@contextmanager
def config_errors(overrides: list[str] | None = None) -> Iterator[None]:
    """Turn what Hydra and OmegaConf raise while composing or instantiating into one-line ConfigErrors."""
    try:
        yield
    except ConfigError:
        raise
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(_key_of(err) or "config", _value_of(err), _first_line(err)) from None
    except MissingConfigException as err:
        raise _missing_option(err) from None
    except (HydraException, OmegaConfBaseException) as err:
        raise _composition_error(err, overrides or []) from None


def _first_line(err: BaseException) -> str:
    """The informative line of a Hydra/OmegaConf message (not its location lines)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("full_key", "object_type", "In '"))] or lines
    return lines[0] if lines else type(err).__name__


def _key_of(err: BaseException) -> str | None:
    found = re.search(r"full_key: ([\w.\[\]]+)", str(err))
    return found.group(1) if found else None


def _value_of(err: BaseException) -> object:
    found = re.search(r"Value '([^']*)'", str(err))
    return found.group(1) if found else None


def _missing_option(err: MissingConfigException) -> ConfigError:
    """``activation=foo`` → activation='foo': unknown option (allowed: ...)."""
    found = re.search(r"Could not find '([\w/]+)/([^']+)'", str(err))
    if not found:
        return ConfigError("config", None, _first_line(err))
    group, value = found.groups()
    allowed = re.findall(r"^\t(\S+)$", str(err), flags=re.MULTILINE)
    return ConfigError(group, value, "unknown option", allowed=allowed or None)


_TYPE_WORDS = {"Float": "a number", "Integer": "an integer", "Boolean": "a boolean (true or false)",
               "String": "a string", "bool": "a boolean (true or false)", "ListConfig": "a list, e.g. [0.1,0.2]",
               "string": "a string"}


def _wanted(message: str) -> str:
    """What OmegaConf's validation message says the value should have been, in words."""
    for pattern in (r"converted to (\w+)", r"not a valid (\w+)", r"is not a (\w+)", r"convert '\w+' to (\w+)"):
        found = re.search(pattern, message)
        if found:
            return _TYPE_WORDS.get(found.group(1), found.group(1))
    return "of the key's type"


def _composition_error(err: BaseException, overrides: list[str]) -> ConfigError:
    text = str(err)
    cause = err.__cause__ if err.__cause__ is not None else err
    if isinstance(cause, ValidationError) or "could not be converted" in text:
        key = _key_of(cause) or _key_of(err) or "config"
        value = _override_value(key, overrides)
        return ConfigError(key, value if value is not None else _value_of(cause), f"must be {_wanted(str(cause))}")
    unknown = re.search(r"Could not override '([\w.]+)'", text) or re.search(r"Key '(\w+)' (?:is not in struct|not "
                                                                           r"in)", text)
    if unknown or isinstance(cause, ConfigKeyError):
        key = unknown.group(1) if unknown else (_key_of(cause) or "config")
        if "." not in key and unknown and unknown.re.pattern.startswith("Key"):
            key = _key_of(cause) or key
        return _unknown_key(key, _override_value(key, overrides), overrides)
    unsupported = re.search(r"does not support sweep type : (\w+)", text)
    if unsupported:
        kind = unsupported.group(1).split("_")[0].lower()
        bad = next((o for o in overrides if f"{kind}(" in o), " ".join(overrides))
        return ConfigError(bad.split("=", 1)[0], bad.split("=", 1)[-1], f"the basic sweeper takes lists (a,b,c), "
                           f"range() and glob(); {kind}() needs another sweeper, e.g. hydra/sweeper=optuna")
    return ConfigError("overrides", " ".join(overrides), _first_line(err))


def _override_value(key: str, overrides: list[str]) -> object:
    for override in overrides:
        name, _, value = override.partition("=")
        if name.lstrip("+~") == key:
            return value
    return None


def _unknown_key(key: str, value: object, overrides: list[str] | None = None) -> ConfigError:
    """An unknown key, with the keys that exist where it was looked for (the chosen option's keys)."""
    parent, _, _ = key.rpartition(".")
    if parent in GROUPS or parent == "solver":
        option, allowed = _chosen_option(parent, overrides or [])
        where = f" for {parent}={option}"
    elif parent in _TOP_LEVEL:
        allowed = sorted(OmegaConf.structured(HopbenchConfig)[parent].keys())
        where = f" of {parent}"
    else:
        allowed, where = sorted(k for k in _TOP_LEVEL), ""
    return ConfigError(key, value, f"unknown config key{where}",
                       allowed=allowed or "none")


def _chosen_option(group: str, overrides: list[str]) -> tuple[str, list[str]]:
    """The option of ``group`` these overrides choose (composed without the parameter overrides) and its keys."""
    choices = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in (*OPTION_KEYS, "experiment")]
    try:
        cfg = _hydra_compose(choices, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException):
        return "?", []
    option = cfg.hydra.runtime.choices.get(group, "?")
    return option, sorted(str(k) for k in cfg[group] if not str(k).startswith("_"))


def _hydra_compose(overrides: list[str], *, return_hydra_config: bool = False) -> DictConfig:
    register()
    if GlobalHydra.instance().is_initialized():
        return hydra.compose("config", overrides=overrides, return_hydra_config=return_hydra_config)
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return hydra.compose("config", overrides=overrides, return_hydra_config=return_hydra_config)


def compose_config(*overrides: str, **options: Any) -> DictConfig:
    """The config that ``hopbench *overrides`` composes, with ``options`` on top: group choices by name
    (``activation="relu"``), group parameters (``activation_params={"beta": 2}``) and top-level keys
    (``n_neurons=50``, ``bias={"kind": "constant", "value": 0.1}``)."""
    override_list = list(overrides)
    params: dict[str, Any] = {}
    for key, value in options.items():
        if key.endswith("_params") and key[: -len("_params")] in OPTION_KEYS:
            params[key[: -len("_params")]] = dict(value or {})
        elif key in OPTION_KEYS and isinstance(value, str):
            override_list.append(f"{key}={value}")
        elif key in _TOP_LEVEL:
            params[key] = OmegaConf.to_container(value) if isinstance(value, DictConfig) else value
        else:
            raise ConfigError(key, value, "not a config group or top-level key",
                              allowed=[*OPTION_KEYS, *_TOP_LEVEL])
    with config_errors(override_list):
        cfg = _hydra_compose(override_list)
        for key, value in params.items():
            if isinstance(value, Mapping):
                for name, item in value.items():
                    if name not in cfg[key]:
                        raise _unknown_key(f"{key}.{name}", item, override_list)
                    cfg[key][name] = item
            else:
                cfg[key] = value
        if "n_patterns" in options and "load" not in options:
            cfg.load = None
        elif "load" in options and "n_patterns" not in options:
            cfg.n_patterns = None
    return cfg


def _instantiate(node: Any, key: str) -> Any:
    with config_errors([key]):
        _check_settings(node, key)
        return instantiate(node, _convert_="all")


def _check_settings(node: Any, key: str) -> None:
    """``+solver.bogus=1`` → solver.bogus=1: unknown setting (allowed: the constructor's parameters)."""
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return
    params = inspect.signature(get_object(node._target_)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for name in node:
        if not str(name).startswith("_") and name not in params:
            raise ConfigError(f"{key}.{name}", node[name], "unknown setting",
                              allowed=[p for p in params if not p.startswith("_")])


def _size(cfg: DictConfig, explicit: set[str]) -> tuple[int, int]:
    """(N, P): ``n_patterns`` or ``load``; one given on the command line overrides the other's default."""
    n_patterns, load = cfg.n_patterns, cfg.load
    if n_patterns is not None and load is not None:
        if {"n_patterns", "load"} <= explicit:
            raise ConfigError("n_patterns", n_patterns, f"give n_patterns or load, not both (load={load})")
        if "load" in explicit:
            n_patterns = None
        else:
            load = None
    n_neurons = int(number("n_neurons", cfg.n_neurons, at_least=1, integer=True))
    return n_neurons, resolve_n_patterns(n_neurons, n_patterns, load)


def system_spec(cfg: DictConfig, *, explicit: set[str] | None = None,
                objects: Mapping[str, Any] | None = None) -> SystemSpec:
    """The checked composition of a config (``objects`` replace the options of their groups)."""
    objects = dict(objects or {})
    parts = {group: objects[group] if group in objects else _instantiate(cfg[group], group)
             for group in _SYSTEM_GROUPS}
    n_neurons, n_patterns = _size(cfg, explicit or set())
    return SystemSpec(**parts, bias=objects.get("bias") or _instantiate(cfg.bias, "bias"), n_neurons=n_neurons,
                      n_patterns=n_patterns, seed=cfg.seed, device=cfg.device, dtype=cfg.dtype, cue_map=cfg.cue_map)


def job_from_config(cfg: DictConfig, *, explicit: set[str] | None = None,
                    objects: Mapping[str, Any] | None = None) -> Job:
    """Every option of ``cfg`` instantiated (by Hydra, from its ``_target_``) and checked together."""
    objects = dict(objects or {})
    spec = system_spec(cfg, explicit=explicit, objects=objects)
    notes = []
    if spec.model.fixed_identity and spec.strategy is not None and spec.strategy.name != "identity":
        notes.append(f"strategy={spec.strategy.name} does not apply to model={spec.model.name} (R = I): ignored")
    setting = cfg.threads
    if setting != "auto":
        number("threads", setting, at_least=1, integer=True)
    parts = {key: objects[key] if key in objects else _instantiate(cfg[key], key)
             for key in ("task", "cue", "solver", "stability", "retrieval", "spurious", "lyapunov", "end_states",
                         "logger")}
    return Job(system=spec, compare=cfg.compare, threads=threads.choose(setting, spec.n_neurons), notes=tuple(notes),
               **parts)


def compose(*overrides: str, **options: Any) -> System:
    """A system by names, exactly as the command line builds it, e.g.
    ``compose(model="modified", activation="tanh", n_neurons=100, load=0.05)`` or with objects,
    ``compose(activation=Tanh(beta=2), weights=Pseudoinverse())``; ``overrides`` are command-line strings
    (``"experiment=..."``, ``"activation.beta=2"``). See :func:`compose_config`."""
    return build_system(compose_spec(*overrides, **options))


def compose_spec(*overrides: str, **options: Any) -> SystemSpec:
    """The checked :class:`SystemSpec` of :func:`compose`. Without command-line strings the options are built
    straight from the registries (the constructors' defaults are the typed configs' defaults, and the default
    choices are conf/config.yaml's), which is what Hydra would compose, minus its cost; with strings, Hydra
    composes them."""
    objects = {k: v for k, v in options.items() if k in OPTION_KEYS and not isinstance(v, str)}
    if "bias" in options and not isinstance(options["bias"], Mapping | DictConfig):
        objects["bias"] = options["bias"]
    rest = {k: v for k, v in options.items() if k not in objects}
    if overrides:
        cfg = compose_config(*overrides, **rest)
        return system_spec(cfg, explicit=explicit_keys(list(overrides)) | set(rest), objects=objects)
    unknown = sorted(set(rest) - {*_SYSTEM_KEYS, *(f"{g}_params" for g in _SYSTEM_GROUPS)})
    if unknown:
        raise ConfigError(unknown[0], rest[unknown[0]], "not an option of a system",
                          allowed=[*_SYSTEM_KEYS, *(f"{g}_params" for g in _SYSTEM_GROUPS)])
    top = {f.name: f.default for f in dataclasses.fields(HopbenchConfig) if f.name in _SYSTEM_KEYS}
    top.update({k: v for k, v in rest.items() if k in top})
    if "n_patterns" in rest and "load" not in rest:
        top["load"] = None
    elif "load" in rest and "n_patterns" not in rest:
        top["n_patterns"] = None
    parts = {}
    for group in _SYSTEM_GROUPS:
        if group in objects:
            parts[group] = objects[group]
            continue
        name = rest.get(group, default_choices()[group])
        parts[group] = None if name == "auto" else GROUPS[group].build(name, rest.get(f"{group}_params"))
    bias = objects.get("bias") or Bias(**dict(rest.get("bias") or {}))
    n_neurons = int(number("n_neurons", top["n_neurons"], at_least=1, integer=True))
    return SystemSpec(**parts, bias=bias, n_neurons=n_neurons,
                      n_patterns=resolve_n_patterns(n_neurons, top["n_patterns"], top["load"]), seed=top["seed"],
                      device=top["device"], dtype=top["dtype"], cue_map=top["cue_map"])


@functools.cache
def default_choices() -> dict[str, str]:
    """Each group's default option, read from conf/config.yaml's defaults list."""
    text = importlib.resources.files(CONFIG_MODULE).joinpath("config.yaml").read_text()
    entries = OmegaConf.create(text).defaults
    return {k: v for entry in entries if isinstance(entry, Mapping) for k, v in entry.items()}
