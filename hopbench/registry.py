"""Registries map config names to implementations (no if/else chains).

The options of every config group are registered here by the layer that implements them; the typed
configs of the command line (hopbench.app.configs) are generated from these registries.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from hopbench.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> factory. ``key`` is the config key that selects an entry (used in error messages)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise KeyError(f"{self.key}: {name!r} registered twice")
            self._entries[name] = factory
            return factory

        return decorator

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._entries:
            raise ConfigError(self.key, name, "unknown option", allowed=self.names())
        return self._entries[name]

    def parameters(self, name: str) -> list[str]:
        """Named parameters the user may set for ``name`` (for error messages and validation)."""
        sig = inspect.signature(self.get(name))
        return [p.name for p in sig.parameters.values() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]

    def build(self, name: str, params: Mapping[str, Any] | None = None, **context: Any) -> T:
        """Call the factory with user ``params`` (named arguments) and internal ``context``."""
        params = dict(params or {})
        allowed = self.parameters(name)
        for key in params:
            if key not in allowed:
                raise ConfigError(f"{self.key}.{key}", params[key], f"not a parameter of {self.key}={name}",
                                  allowed=allowed or "none")
        return self.get(name)(**context, **params)
