"""encoder-sweep's launchers (sweep/scheduler.py), here because Hydra loads launcher plugins only
from classes defined in the hydra_plugins package: hydra/launcher=slurm names them."""

from sweep import scheduler


class SlurmLauncher(scheduler.CollectingLauncher):
    _EXECUTOR = "slurm"


class LocalLauncher(scheduler.CollectingLauncher):
    _EXECUTOR = "local"
