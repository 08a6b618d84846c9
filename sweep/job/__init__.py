"""One job, start to end: its lifecycle (skip, status, signals, tracker, clean-up) and its recipe,
the assembly of everything it needs before the first step, and its experiment trackers (tracking.py,
and one module per tracker: wandb, MLflow, TensorBoard)."""
