"""edgeact.train: episode datasets, the ACT model, training, checkpoints and evaluation."""
