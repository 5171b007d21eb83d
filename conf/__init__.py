"""hopbench's Hydra configs, shipped inside the wheel as ``hopbench.conf`` (loaded with ``pkg://hopbench.conf``).

``config.yaml`` holds the defaults list; the options of each group are typed configs generated from the
Python constructors (hopbench/app/configs.py); ``experiment/``, ``hydra/launcher/`` and ``hparams_search/``
hold presets.
"""
