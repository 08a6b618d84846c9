"""What mattered in a tuned sweep (hydra/sweeper=tune): each cell's study read back from the sweep's
Optuna journal, each searched knob's importance (fANOVA, optuna.importance: the share of the
objective's variance over the trials that the knob explains) and a parallel-coordinates view of the
trials (optuna.visualization.matplotlib). Written as importance.csv and parallel_<n>.png beside the
tables; a study with too few finished trials says so instead."""

import warnings
from pathlib import Path
from typing import Any, Dict, List, Sequence

import pandas as pd

from sweep.errors import reason

IMPORTANCE_CSV = "importance.csv"
MIN_TRIALS = 3  # fANOVA's forest needs a few finished trials to say anything


def studies(journals: Sequence[Path]) -> List[Any]:
    """Every study of the journals (one per cell of each tune sweep), in the order they were created."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    found = []
    for journal in journals:
        storage = JournalStorage(JournalFileBackend(str(journal)))
        found += [optuna.load_study(study_name=s.study_name, storage=storage) for s in storage.get_all_studies()]
    return found


def finished(study) -> list:
    import optuna

    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def importances(study) -> Dict[str, float]:
    """Each searched knob's fANOVA importance (they sum to 1), the most important first."""
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    return get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))


def parallel_coordinates(plt, study, path: Path) -> None:
    from optuna.visualization.matplotlib import plot_parallel_coordinate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        ax = plot_parallel_coordinate(study)
    figure = ax.figure
    figure.set_size_inches(8, 4)
    figure.suptitle(f"trials of {study.study_name}", fontsize="small")
    figure.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(figure)


def tuning_report(journals: Sequence[Path], out: Path) -> List[Dict[str, Any]]:
    """Per study: its cell (the study's name), the trials that finished, the knobs' importances (or
    why there are none) and its parallel-coordinates file; importance.csv holds the importances."""
    if not journals:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found, rows = [], []
    for number, study in enumerate(studies(journals), start=1):
        trials = finished(study)
        entry = {"cell": study.study_name, "trials": len(trials), "direction": study.direction.name.lower()}
        if len(trials) < MIN_TRIALS:
            entry["note"] = f"{len(trials)} finished trials: fANOVA needs at least {MIN_TRIALS}"
        else:
            try:
                entry["importance"] = importances(study)
            except (RuntimeError, ValueError) as error:  # e.g. every trial scored alike: no variance to share out
                entry["note"] = f"no importance: {reason(error)}"
                found.append(entry)
                continue
            rows += [{"cell": study.study_name, "knob": k, "importance": v} for k, v in entry["importance"].items()]
            entry["plot"] = f"parallel_{number}.png"
            parallel_coordinates(plt, study, out / entry["plot"])
        found.append(entry)
    pd.DataFrame(rows, columns=["cell", "knob", "importance"]).to_csv(out / IMPORTANCE_CSV, index=False)
    return found
