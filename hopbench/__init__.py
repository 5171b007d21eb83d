"""hopbench: a benchmark framework for continuous-time associative memories (Hopfield-type neural ODEs).

``compose`` builds a system by names, exactly as the ``hopbench`` command does (both instantiate the same
typed configs); the layers are ``hopbench.core`` (mathematics), ``hopbench.solve``, ``hopbench.analysis``,
``hopbench.app`` and ``hopbench.repro``.
"""

import os

# OpenMP threads that wait actively spin on the cores between torch's small parallel regions, which slows a job
# many times when other processes share the cores; waiting passively costs nothing measurable here. Read by the
# OpenMP runtime when torch loads it, so it must come before torch is imported; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from importlib.metadata import PackageNotFoundError, version

from hopbench.app.compose import compose
from hopbench.core.system import System
from hopbench.errors import ConfigError

__all__ = ["ConfigError", "System", "__version__", "compose"]

try:
    __version__ = version("hopbench")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
