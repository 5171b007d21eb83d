"""hopbench's Hydra configs, shipped inside the wheel as ``hopbench.conf`` (loaded with ``pkg://hopbench.conf``).

``config.yaml`` holds the defaults list; the options of each group are typed configs generated from the
Python constructors (hopbench/app/configs.py); ``experiment/``, ``hydra/launcher/`` and ``hparams_search/``
hold presets.

``hydra/launcher/{joblib,submitit_local,submitit_slurm}.yaml`` carry the names of the launcher plugins' own typed
configs, so that ``hydra/launcher=joblib`` gets hopbench's defaults: Hydra merges each file onto the plugin's
config of the same name (and checks it against that config's types), with a deprecation notice about that
merge, which is silenced here for these files only. Each file also names its ``_target_``, so that it works
alone where a Hydra without the merge loads it.
"""

import warnings

warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/(joblib|submitit_local|submitit_slurm)' is validated "
                        r"against ConfigStore schema with the same name", category=UserWarning)
