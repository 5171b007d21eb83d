"""Errors that reach the user: one line, naming the config key and what is allowed."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad user input, detected before any compute.

    ``str(error)`` is one line: ``<key>=<value>: <what is wrong> (allowed: ...)``.
    """

    def __init__(self, key: str, value: object, message: str, allowed: object | None = None) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        text = f"{key}={value!r}: {message}"
        if allowed is not None:
            if isinstance(allowed, list | tuple | set | frozenset):
                allowed = ", ".join(str(a) for a in sorted(allowed, key=str))
            text += f" (allowed: {allowed})"
        super().__init__(" ".join(text.split()))
