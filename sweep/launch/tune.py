"""hydra/sweeper=tune: a tuned grid. The command line's grid axes (model=bert,modernbert
pooling=cls,mean) are the cells; each cell gets its own Optuna study with the same budget
(n_trials), the same sampler and the same sampler seed, over the search space of
hydra.sweeper.params in Hydra's sweep grammar (interval, tag(log, interval), choice, range).

The studies live in one journal file in the sweep dir (Optuna's JournalStorage), which is also how
jobs on joblib workers or SLURM nodes report each epoch's validation accuracy for pruning
(sweep/launch/trial.py). Rerunning the same command into the same sweep dir continues: finished trials are
kept, interrupted ones are launched again into their run dirs (and resume from their last epoch),
failed ones are retried with the same values, and each cell ends with n_trials trials.

Every trial is an ordinary run dir, CELL_DIRNAME,trial=K (K: the trial's slot in its cell's
budget, 0..n_trials-1), and the sweeper learns each trial's outcome from its metrics.json."""

import itertools
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

from sweep.config.metrics import DEFAULT_METRIC, direction
from sweep.errors import InputError
from sweep.launch.dirnames import job_dirname
from sweep.rundir import METRICS_FILE, MULTIRUN_FILE, TUNE_JOURNAL, Status, read_json

log = logging.getLogger(__name__)

# a job's Optuna study (its cell) and trial number, set per job through hydra.job.env_set
STUDY_ENV, TRIAL_ENV = "ENCODER_SWEEP_STUDY", "ENCODER_SWEEP_TRIAL"
SAMPLERS = ("tpe", "random")
PRUNERS = ("none", "median", "successive_halving")
SPACE_HELP = "interval(a, b), tag(log, interval(a, b)), choice(a, b, ...) or range(start, stop[, step])"


@dataclass
class TuneSweeperConf:
    """hydra.sweeper.* of hydra/sweeper=tune."""

    _target_: str = "hydra_plugins.encoder_sweep.TuneSweeper"
    # trials per cell: every cell gets the same budget
    n_trials: int = 10
    # trials launched at once (over all cells), through the configured launcher (basic, joblib, slurm)
    n_jobs: int = 1
    # tpe (Optuna's default: random for its first 10 trials, then model-based) | random
    sampler: str = "tpe"
    # the sampler seed, the same in every cell: trial K of every cell starts from the same random draw
    seed: int = 0
    # none | median (stop a trial whose trainer.select_metric after a validation is worse than the median
    # of the cell's earlier trials after that validation) | successive_halving (asynchronous successive
    # halving over validations). A validation is an epoch unless trainer.eval_every_steps is set.
    pruner: str = "none"
    # trials per cell that run to the end before the median pruner stops any (the median needs them)
    pruner_startup_trials: int = 2
    # epochs every trial trains before a pruner may stop it: after one epoch from a fresh head most
    # trials are still near chance, so a slow starter that ends best would be stopped with the ones diverging
    pruner_warmup_epochs: int = 1
    # the search space: {config key: sweep expression}, e.g. {optim.lr: "tag(log, interval(1e-5, 1e-4))"}
    # (Any, None: a dict given on the command line replaces it; typed, Hydra would refuse its new keys)
    params: Any = None


@dataclass
class Slot:
    """Trial K of a cell: the Optuna trial filling it now (None: not asked yet)."""

    cell: int
    index: int
    trial_number: Optional[int] = None
    params: Dict[str, Any] = field(default_factory=dict)  # a retry's values
    enqueued: bool = False  # its retry is already queued in the study (a kill came before it was asked)


def space_of(params: Dict[str, str], command_line: Sequence[Override]) -> Dict[str, Any]:
    """The search space as Optuna distributions: hydra.sweeper.params, plus any interval the command
    line gives (an interval cannot be a grid axis). A bad expression is an InputError naming it."""
    import optuna.distributions as dist

    parser = OverridesParser.create()
    expressions = [(key, f"{key}={value}", "hydra.sweeper.params") for key, value in (params or {}).items()]
    overrides = []
    for key, line, where in expressions:
        try:
            overrides.append((key, parser.parse_override(line), where))
        except Exception as error:
            raise InputError(f"{where}.{key}: cannot parse {line!r} ({error}); use {SPACE_HELP}") from None
    overrides += [(o.get_key_element(), o, "the command line") for o in command_line]
    space = {}
    for key, override, where in overrides:
        value = override.value()
        log_scale = "log" in getattr(value, "tags", set())
        try:
            if isinstance(value, IntervalSweep):
                if isinstance(value.start, int) and isinstance(value.end, int):
                    space[key] = dist.IntDistribution(value.start, value.end, log=log_scale)
                else:
                    space[key] = dist.FloatDistribution(float(value.start), float(value.end), log=log_scale)
            elif isinstance(value, (ChoiceSweep, RangeSweep)) and not log_scale:
                space[key] = dist.CategoricalDistribution(list(override.sweep_string_iterator()))
            else:
                raise ValueError(f"{override.input_line!r} is not a search space")
        except ValueError as error:  # Optuna's own checks: low > high, a log scale from 0
            raise InputError(f"{where}: {key}: {str(error).rstrip('.')}; use {SPACE_HELP}") from None
    return space


def split_arguments(arguments: Sequence[str]) -> Tuple[List[str], List[List[str]], List[Override]]:
    """The command line as (overrides every job gets, the cells' grid axes, search intervals)."""
    common, axes, intervals = [], [], []
    for override in OverridesParser.create().parse_overrides(list(arguments)):
        if not override.is_sweep_override():
            common.append(override.input_line)
        elif isinstance(override.value(), IntervalSweep):
            intervals.append(override)
        else:
            key = override.get_key_element()
            axes.append([f"{key}={value}" for value in override.sweep_string_iterator()])
    return common, axes, intervals


def quoted(value: str) -> str:
    """A string as one value of Hydra's override grammar, whatever it holds (= , ' \\)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def make_sampler(name: str, seed: int):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed) if name == "random" else optuna.samplers.TPESampler(seed=seed)


def make_pruner(name: str, startup_trials: int, warmup_epochs: int):
    """The pruner a job consults after each validation (the n-th validation is Optuna's step n: the
    epoch, unless trainer.eval_every_steps validates more often)."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs)
    if name == "successive_halving":  # rungs after warmup+1, +3, +9 ... epochs: keeps the best third at each
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=warmup_epochs + 1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def journal_storage(sweep_dir: Path):
    """The sweep's studies: an append-only log on a shared file system, safe for many writers."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(Path(sweep_dir) / TUNE_JOURNAL)))


def check_settings(conf: TuneSweeperConf) -> None:
    if conf.sampler not in SAMPLERS:
        raise InputError(f"hydra.sweeper.sampler={conf.sampler}: use one of {', '.join(SAMPLERS)}")
    if conf.pruner not in PRUNERS:
        raise InputError(f"hydra.sweeper.pruner={conf.pruner}: use one of {', '.join(PRUNERS)}")
    for key in ("n_trials", "n_jobs"):
        if getattr(conf, key) < 1:
            raise InputError(f"hydra.sweeper.{key}={getattr(conf, key)}: must be at least 1")
    for key in ("pruner_startup_trials", "pruner_warmup_epochs"):
        if getattr(conf, key) < 0:
            raise InputError(f"hydra.sweeper.{key}={getattr(conf, key)}: must be 0 or more")


def cell_select_metric(cell: List[str], config) -> Optional[str]:
    """The trainer.select_metric the cell's trials are chosen by: the cell's own where it is a grid
    axis, else the sweep's (null: the task's headline, higher-is-better like every one of them)."""
    for override in cell:
        key, _, value = override.partition("=")
        if key.lstrip("+") == "trainer.select_metric":
            return value
    return OmegaConf.select(config, "trainer.select_metric", default=None)


def cell_slots(cell: int, study, n_trials: int) -> List[Slot]:
    """A cell's slots still to run: interrupted trials, failed ones, then the ones never asked."""
    from optuna.trial import TrialState

    latest: Dict[int, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        if "slot" in trial.user_attrs:
            latest[trial.user_attrs["slot"]] = trial  # a retry comes after the trial it retries
    slots = []
    for k in range(n_trials):
        trial = latest.get(k)
        if trial is None:
            slots.append(Slot(cell, k))
        elif trial.state == TrialState.RUNNING:
            slots.append(Slot(cell, k, trial.number, dict(trial.params)))
        elif trial.state == TrialState.WAITING:
            slots.append(Slot(cell, k, enqueued=True))
        elif trial.state == TrialState.FAIL:
            slots.append(Slot(cell, k, None, dict(trial.params)))  # asked again, with the same values
    return slots


class CellSweeper(Sweeper):
    """The sweeper; hydra_plugins/encoder_sweep names it TuneSweeper (Hydra takes plugins only from there)."""

    def __init__(self, **settings: Any):
        self.conf = TuneSweeperConf(**settings)
        self.config: Optional[DictConfig] = None
        self.launcher = None
        self.job_idx = 0

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # ------------------------------------------------------------ the sweep

    def sweep(self, arguments: List[str]) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep logs what it does itself
        try:
            self.run_studies(arguments)
        except InputError as error:  # the user's to fix: one line, no traceback
            sys.exit(f"error: {error}")

    def run_studies(self, arguments: List[str]) -> None:
        check_settings(self.conf)
        common, axes, intervals = split_arguments(arguments)
        self.space = space_of(self.conf.params, intervals)
        if not self.space:
            raise InputError(
                "hydra/sweeper=tune has nothing to tune: give hydra.sweeper.params, e.g. "
                "'hydra.sweeper.params={optim.lr: \"tag(log, interval(1e-5, 1e-4))\"}' (or hydra/sweeper=tune_lr)"
            )
        self.common, self.cells = common, [list(cell) for cell in itertools.product(*axes)]
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / MULTIRUN_FILE)
        self.sweep_dir, self.storage = sweep_dir, journal_storage(sweep_dir)
        self.studies = [self.open_study(cell) for cell in self.cells]
        queue = self.plan()
        log.info(
            "tune: %d cell(s) x %d trials (%d to run) over %s; sampler %s (seed %d), pruner %s; studies in %s",
            len(self.cells),
            self.conf.n_trials,
            len(queue),
            ", ".join(self.space),
            self.conf.sampler,
            self.conf.seed,
            self.conf.pruner,
            sweep_dir / TUNE_JOURNAL,
        )
        while queue:
            batch, queue = queue[: self.conf.n_jobs], queue[self.conf.n_jobs :]
            self.run_batch(batch)

    def open_study(self, cell: List[str]):
        """The cell's study, created on the first run; a rerun with another search space is refused
        (its trials would not be comparable with the new ones)."""
        import optuna

        name, goal = ",".join(cell) or "all", direction(cell_select_metric(cell, self.config))
        study = optuna.create_study(study_name=name, storage=self.storage, direction=goal, load_if_exists=True)
        space = json.dumps({key: repr(d) for key, d in self.space.items()}, sort_keys=True)
        if study.direction.name.lower() != goal:
            raise InputError(
                f"the sweep dir {self.sweep_dir} holds a study of {name} that {study.direction.name.lower()}s its "
                f"objective; trainer.select_metric now asks to {goal} it: tune into a new hydra.sweep.dir"
            )
        recorded = study.user_attrs.get("space")
        if recorded is None:
            study.set_user_attr("space", space)
        elif recorded != space:
            raise InputError(
                f"the sweep dir {self.sweep_dir} holds a study of {name} over another search space "
                f"({recorded}, now {space}): tune into a new hydra.sweep.dir"
            )
        return study

    def plan(self) -> List[Slot]:
        """The slots to run, round-robin over the cells: trials interrupted before (resumed in their
        run dirs), failed ones (retried with the same values), then new ones up to n_trials."""
        per_cell = [cell_slots(c, study, self.conf.n_trials) for c, study in enumerate(self.studies)]
        return [slot for round_ in itertools.zip_longest(*per_cell) for slot in round_ if slot is not None]

    def ask(self, slot: Slot) -> Tuple[int, Dict[str, Any]]:
        """A new trial for the slot: sampled with the sampler seeded by (seed, slot), so that a rerun
        draws what the first run would have, and every cell's trial K starts from the same draw."""
        study = self.studies[slot.cell]
        if slot.params and not slot.enqueued:  # a retry of a failed trial: the same values
            study.enqueue_trial(slot.params, user_attrs={"slot": slot.index})
        study.sampler = make_sampler(self.conf.sampler, self.conf.seed * 100_003 + slot.index)
        trial = study.ask(fixed_distributions=self.space)
        trial.set_user_attr("slot", slot.index)
        trial.set_user_attr("run_dir", self.dirname(slot))
        return trial.number, trial.params

    def dirname(self, slot: Slot) -> str:
        """CELL_DIRNAME,trial=K (or trial=K where the command line has no grid): as readable as a grid's."""
        naming, cell = self.config.hydra.job.config.override_dirname, self.cells[slot.cell]
        trial = f"trial{naming.kv_sep}{slot.index}"
        return f"{job_dirname(cell, naming)}{naming.item_sep}{trial}" if cell else trial

    def run_batch(self, batch: List[Slot]) -> None:
        jobs = []
        for slot in batch:
            if slot.trial_number is None:
                slot.trial_number, slot.params = self.ask(slot)
            else:
                log.info("tune: trial %d of %s again (interrupted before)", slot.trial_number, self.dirname(slot))
            values = [f"{key}={value}" for key, value in slot.params.items()]
            jobs.append(
                [
                    *self.common,
                    *self.cells[slot.cell],
                    *values,
                    f"hydra.sweep.subdir={quoted(self.dirname(slot))}",
                    f"++hydra.job.env_set.{STUDY_ENV}={quoted(self.studies[slot.cell].study_name)}",
                    f"++hydra.job.env_set.{TRIAL_ENV}={slot.trial_number}",
                ]
            )
        self.launcher.launch(jobs, initial_job_idx=self.job_idx)
        self.job_idx += len(jobs)
        for slot in batch:
            self.tell(slot)

    def tell(self, slot: Slot) -> None:
        """The trial's outcome, from its run dir: completed (its best select metric), pruned, or failed
        (anything else: it failed, was interrupted, or died without a word)."""
        from optuna.trial import TrialState

        study, metrics = self.studies[slot.cell], read_json(self.sweep_dir / self.dirname(slot) / METRICS_FILE) or {}
        status, objective = metrics.get("status"), metrics.get(metrics.get("select_metric", DEFAULT_METRIC))
        if status == Status.COMPLETED and objective is not None:
            study.tell(slot.trial_number, objective, skip_if_finished=True)
        elif status == Status.PRUNED:
            study.tell(slot.trial_number, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            study.tell(slot.trial_number, state=TrialState.FAIL, skip_if_finished=True)
