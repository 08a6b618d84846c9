"""A refactor must not change a result: compare two sweeps of the same grid, run dir by run dir.

    python tests/helpers/compare_sweeps.py BEFORE_SWEEP_DIR AFTER_SWEEP_DIR

Every metrics.json field but the timings and config_hash, history.csv without its seconds, and
predictions_test.parquet must be equal; exits 1 and names what differs otherwise. Fields and history
columns only AFTER has (a new record, such as optimizer_steps) are listed as added, not as differences:
what BEFORE recorded must not change."""

import json
import sys
from pathlib import Path

import pandas as pd

from sweep.rundir import HISTORY_FILE, METRICS_FILE, PREDICTIONS_FILE, TIMING_FIELDS

IGNORED = set(TIMING_FIELDS) | {"config_hash"}


def compare(before: Path, after: Path) -> int:
    names = sorted(p.parent.name for p in before.glob(f"*/{METRICS_FILE}"))
    if names != sorted(p.parent.name for p in after.glob(f"*/{METRICS_FILE}")):
        print("the sweeps hold different run dirs")
        return 1
    differing = 0
    for name in names:
        m0, m1 = (json.loads((d / name / METRICS_FILE).read_text()) for d in (before, after))
        fields = {k: (m0.get(k), m1.get(k)) for k in set(m0) - IGNORED if m0.get(k) != m1.get(k)}
        added = sorted(set(m1) - set(m0) - IGNORED)
        h0, h1 = (pd.read_csv(d / name / HISTORY_FILE).drop(columns="seconds") for d in (before, after))
        added_columns = [c for c in h1.columns if c not in h0.columns]
        same_history = h0.equals(h1[[c for c in h1.columns if c in h0.columns]])
        p0, p1 = (pd.read_parquet(d / name / PREDICTIONS_FILE) for d in (before, after))
        same = not fields and same_history and p0.equals(p1)
        differing += not same
        print(
            f"{name}: {'same' if same else 'DIFFERS'} (fields {fields or 'equal'}, history {same_history}, "
            f"{len(p0)} predictions {p0.equals(p1)}; added fields {added or 'none'}, history columns {added_columns or 'none'})"
        )
    print("identical" if not differing else f"{differing} run(s) differ")
    return int(bool(differing))


if __name__ == "__main__":
    sys.exit(compare(Path(sys.argv[1]), Path(sys.argv[2])))
