"""Cells: the config keys whose values differ across the runs define them, minus those that cannot
change a result (sweep/config/neutral.py), minus `seed` (seeds are replicates of one cell), minus a group's
sub-keys that just follow its `name` (model.id follows model.name), minus data.split_seed while it
follows seed. A key a config lacks is "(not recorded)" there. Each (cell, seed) counts once: the run
that finished last."""

from typing import Dict, List, Sequence, Tuple

from sweep.config.neutral import is_result_neutral
from sweep.report.record import RunRecord
from sweep.rundir import Status

ALWAYS = ("model.name", "pooling.name")  # columns of every table, even when only one value ran
NOT_RECORDED = "(not recorded)"  # the cell value of a key a run's config lacks: another setup, never merged


def cell_keys(runs: Sequence[RunRecord]) -> List[str]:
    """Config keys that define a cell (see the module docstring), model and pooling first."""
    configs = [run.config for run in runs if run.has_config] or [run.config for run in runs]
    keys = sorted({k for cfg in configs for k in cfg})
    # a key some configs lack (an older schema) is NOT_RECORDED there: it may have meant another setup
    varying = [
        k
        for k in keys
        if k != "seed" and not is_result_neutral(k) and len({repr(cfg.get(k, NOT_RECORDED)) for cfg in configs}) > 1
    ]
    if all(cfg.get("data.split_seed") == cfg.get("seed") for cfg in configs):
        varying = [k for k in varying if k != "data.split_seed"]  # the split just follows the seed

    def follows_group_name(key: str) -> bool:
        group = key.split(".", 1)[0] + ".name"
        per_name: Dict[str, set] = {}
        for cfg in configs:
            per_name.setdefault(repr(cfg.get(group)), set()).add(repr(cfg.get(key, NOT_RECORDED)))
        return group in keys and all(len(values) == 1 for values in per_name.values())

    names = [k for k in varying if k.endswith(".name") and k not in ALWAYS]
    return list(ALWAYS) + names + [k for k in varying if not k.endswith(".name") and not follows_group_name(k)]


def column_name(key: str) -> str:
    """A cell key's column in the tables: a group's `name` goes by the group (model.name -> model)."""
    return key[: -len(".name")] if key.endswith(".name") and key.count(".") == 1 else key


def cell_label(keys: Sequence[str], values: Sequence) -> str:
    """A cell as the tables and plots name it: model=bert, pooling=cls, ..."""
    return ", ".join(f"{column_name(k)}={v}" for k, v in zip(keys, values))


def assign_cells(runs: Sequence[RunRecord], keys: Sequence[str]) -> None:
    for run in runs:
        if run.path is None:  # a job that never started has only its overrides
            run.label = ", ".join(run.overrides)
            continue
        # a run without .hydra names only its model and pooling: NOT_RECORDED keeps it out of other cells
        run.cell = tuple(run.config.get(k, NOT_RECORDED) for k in keys)
        run.label = cell_label(keys, run.cell)


def drop_reruns(runs: Sequence[RunRecord]) -> None:
    """One completed run per (cell, seed), the one that finished last: a grid rerun into a new dir and
    collected with the old one must not count a seed twice. The others leave the table, with the reason."""
    newest: Dict[tuple, RunRecord] = {}
    for run in (r for r in runs if r.status == Status.COMPLETED):
        kept = newest.get((run.cell, run.seed))
        if kept is None or (run.finished_at, str(run.path)) > (kept.finished_at, str(kept.path)):
            newest[(run.cell, run.seed)] = run
    for run in (r for r in runs if r.status == Status.COMPLETED):
        kept = newest[(run.cell, run.seed)]
        if kept is not run:
            run.status, run.error = "duplicate", f"same cell and seed as {kept.path}, which finished later"


def group_cells(runs: List[RunRecord]) -> Tuple[List[str], Dict[tuple, List[RunRecord]]]:
    """Finds the cell keys, labels every run, keeps one run per (cell, seed), orders them, and groups
    the completed ones by cell."""
    keys = cell_keys([r for r in runs if r.path])
    assign_cells(runs, keys)
    drop_reruns(runs)
    runs.sort(key=lambda r: (r.path is None, [str(v) for v in r.cell], str(r.seed), str(r.path)))
    cells: Dict[tuple, List[RunRecord]] = {}
    for run in runs:
        if run.status == Status.COMPLETED:
            cells.setdefault(run.cell, []).append(run)
    return keys, cells
