"""Everything Hydra: the schema registered in its ConfigStore, the launchers' logic (SLURM, local),
the tune sweeper and a job's trial, the callbacks, run-dir names, a job's threads and GPU, signals."""
