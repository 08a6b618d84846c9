"""encoder-sweep's launchers (sweep/cluster.py), here because Hydra loads launcher plugins only
from classes defined in the hydra_plugins package: hydra/launcher=slurm names them."""

from sweep import cluster


class SlurmLauncher(cluster.CollectingLauncher):
    _EXECUTOR = "slurm"


class LocalLauncher(cluster.CollectingLauncher):
    _EXECUTOR = "local"
