"""Training one assembled job: the loop (loop.py), its steps, validation and schedule, the optimizer,
the best checkpoint, resume, compilation, frozen features, and the cost of the test pass."""
