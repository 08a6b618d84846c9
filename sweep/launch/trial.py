"""A job's side of a hydra/sweeper=tune sweep (sweep/launch/tune.py): the Optuna trial it is, found through
the sweep dir's journal file (shared by joblib workers and SLURM nodes), told the validation
select metric (trainer.select_metric) after every validation; the trial's pruner says whether to stop there."""

import logging
import os
from pathlib import Path
from typing import Optional

from sweep.launch.tune import STUDY_ENV, TRIAL_ENV, journal_storage, make_pruner

log = logging.getLogger(__name__)


class TrialPruned(Exception):
    """The pruner stopped the trial after a validation: the run ends as pruned, without a test pass."""


class Trial:
    """One tune trial as its job sees it."""

    def __init__(self, sweep_dir: Path, study_name: str, number: int, pruner_name: str, pruner):
        import optuna

        self.storage, self.number, self.pruner_name = journal_storage(sweep_dir), number, pruner_name
        self.study = optuna.load_study(study_name=study_name, storage=self.storage, pruner=pruner)
        study_id = self.storage.get_study_id_from_name(study_name)
        self.trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, number)

    @classmethod
    def of_this_job(cls, hydra_cfg) -> Optional["Trial"]:
        """The trial the tune sweeper launched this job for (None: not a tune job)."""
        study, number = os.environ.get(STUDY_ENV), os.environ.get(TRIAL_ENV)
        if number is None or not str(hydra_cfg.sweeper.get("_target_", "")).endswith("TuneSweeper"):
            return None
        sweeper = hydra_cfg.sweeper
        pruner = make_pruner(sweeper.pruner, sweeper.pruner_startup_trials, sweeper.pruner_warmup_epochs)
        return cls(Path(hydra_cfg.sweep.dir), study, int(number), sweeper.pruner, pruner)

    @property
    def name(self) -> str:
        return f"{self.study.study_name}#{self.number}"

    def report(self, validation: int, metric: str, value: float, last: bool) -> None:
        """Records the n-th validation's select metric in the trial; raises TrialPruned where the pruner
        stops it (never after the last validation: nothing would be saved by stopping there)."""
        self.storage.set_trial_intermediate_value(self.trial_id, validation, value)
        if last:
            return
        if self.study.pruner.prune(self.study, self.storage.get_trial(self.trial_id)):
            raise TrialPruned(
                f"after validation {validation} ({metric} {value:.4f}) by the {self.pruner_name} pruner, "
                f"against the other trials of {self.study.study_name} at that validation"
            )
