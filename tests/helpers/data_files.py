"""Labelled text data as the tests write it and read it back: a data preset composed from conf/,
a table written in the format its suffix names, and predict.py's main() run in this process."""

import contextlib
import io

import pandas as pd
from hydra import compose, initialize_config_dir

import sweep.launch.config_store  # noqa: F401  (registers the config schema that config.yaml names)
from helpers.app import REPO, InProcessResult


def data_config(preset: str, *overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        return compose("config", overrides=[f"data={preset}", *overrides]).data


def write(frame: pd.DataFrame, path):
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    return path


def predict_main(*args) -> InProcessResult:
    """predict.py's main() in this process, its output captured (the script's start is test_predict.py's)."""
    from sweep.predict import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(arg) for arg in args])
    return InProcessResult(code, out.getvalue(), err.getvalue())
