"""The classifier: encoder + pooling + head, the poolings, the training regimes (which weights train),
the tasks' heads and losses, tiny models of each family, and the device and precision it runs in."""
