"""hopbench: a benchmark framework for continuous-time associative memories (Hopfield-type neural ODEs).

The engine is plain Python (``compose`` builds a system from names); the ``hopbench`` command wraps it
in Hydra configs.
"""

from hopbench.core.system import System, compose
from hopbench.errors import ConfigError

__all__ = ["ConfigError", "System", "compose"]
__version__ = "0.1.0"
