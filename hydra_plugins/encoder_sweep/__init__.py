"""encoder-sweep's launchers (sweep/launch/cluster.py) and its sweeper (sweep/launch/tune.py), here because Hydra
loads plugins only from classes defined in the hydra_plugins package: hydra/launcher=slurm and
hydra/sweeper=tune name them."""

from sweep.launch import cluster, tune


class SlurmLauncher(cluster.CollectingLauncher):
    _EXECUTOR = "slurm"


class LocalLauncher(cluster.CollectingLauncher):
    _EXECUTOR = "local"


class TuneSweeper(tune.CellSweeper):
    pass
