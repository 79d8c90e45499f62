"""Training and inference machinery: config, builders, trainer, checkpoints, DDP set-up."""
