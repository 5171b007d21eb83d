"""hopbench's resumable sweeper as a Hydra plugin: ``hydra/sweeper=resumable`` (conf/hydra/sweeper/resumable.yaml).

Hydra's basic sweeper (lists ``a,b,c``, ``range()``, ``glob()``) whose jobs are named by their swept keys and,
with ``resume``, only the jobs not already complete in ``hydra.sweep.dir`` are launched. Hydra instantiates
sweepers only from the ``hydra_plugins`` namespace, so the class lives here; the work is done by
:func:`hopbench.app.sweep.resumable_batches`, imported when a sweep starts (Hydra's plugin scan stays light).
"""

from __future__ import annotations

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.types import Override

__all__ = ["ResumableSweeper"]


class ResumableSweeper(BasicSweeper):
    """The basic sweeper, launching only the jobs of the sweep that are not already complete."""

    def split_arguments(self, overrides: list[Override], max_batch_size: int | None  # type: ignore[override]
                        ) -> list[list[list[str]]]:
        """The batches to launch (an instance method here, unlike the basic sweeper's: it reads the sweep's
        config and folder)."""
        from hopbench.app.sweep import resumable_batches

        return resumable_batches(self, overrides, max_batch_size)
