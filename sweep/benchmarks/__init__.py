"""The benchmark library behind `sweep/bench.py`: the shared harness, the train step against a
bare step, the regimes, data preparation, serving, and host-sync counting."""
