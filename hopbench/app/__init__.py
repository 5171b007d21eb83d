"""The application: settings from Hydra configs, tasks, the job runner, the CLI, results and wandb tracking,
reports and figures."""
