"""First-party loggers: ``csv`` (the run's own ``metrics.csv``) and ``wandb`` (Weights & Biases)."""
