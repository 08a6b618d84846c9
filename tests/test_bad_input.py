"""Bad input fails before any training, in one line that names the bad value and what would work,
and the run dir says so (status failed) without a history of epochs that never ran."""

import pandas as pd
import pytest

from helpers.app import train
from helpers.rundirs import compose_config, metrics
from sweep.errors import InputError
from sweep.runner import run


def failed_run(tmp_path, *overrides):
    run_dir = tmp_path / "run"
    cfg = compose_config("experiment=smoke", "logger=none", *overrides)
    with pytest.raises(InputError) as caught:
        run(cfg, run_dir)
    m = metrics(run_dir)
    assert m["status"] == "failed" and m["error"].endswith(str(caught.value))
    assert not (run_dir / "history.csv").exists() and not (run_dir / "best").exists()
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_local_dir_that_does_not_exist(tmp_path):
    message = failed_run(tmp_path, "data=imdb", f"data.local_dir={tmp_path}/nowhere")
    assert f"data.local_dir='{tmp_path}/nowhere' does not exist" in message and "train.parquet" in message


def test_local_dir_without_the_test_split(tmp_path):
    pd.DataFrame({"text": ["good", "bad"], "label": [1, 0]}).to_parquet(tmp_path / "train.parquet")
    message = failed_run(tmp_path, "data=imdb", f"data.local_dir={tmp_path}")
    assert "lacks test.parquet" in message


def test_parquet_without_text_and_label(tmp_path):
    for split in ("train", "test"):
        pd.DataFrame({"review": ["good", "bad"], "stars": [5, 1]}).to_parquet(tmp_path / f"{split}.parquet")
    message = failed_run(tmp_path, "data=imdb", f"data.local_dir={tmp_path}")
    assert "['text', 'label']" in message and "found ['review', 'stars']" in message


def test_max_len_above_the_model_maximum(tmp_path):
    message = failed_run(tmp_path, "data.max_len=4096")
    assert "data.max_len=4096" in message and "<= 512" in message


def test_max_len_of_a_real_model_is_read_from_its_config(tmp_path):
    message = failed_run(tmp_path, "model=minilm", "model.tiny=false", "data.max_len=1024")
    assert "data.max_len=1024" in message and "'minilm'" in message and "<= 512" in message


def test_hub_model_that_cannot_be_reached(tmp_path):
    message = failed_run(tmp_path, "model=bert", "model.tiny=false")
    assert "model.id='bert-base-uncased'" in message and "HF_HUB_OFFLINE=1" in message
    assert "local directory" in message


def test_the_cli_prints_one_line_and_exits_non_zero(tmp_path):
    result = train(
        "experiment=smoke",
        "logger=none",
        "data=imdb",
        f"data.local_dir={tmp_path}/nowhere",
        f"hydra.run.dir={tmp_path}/run",
        multirun=False,
        check=False,
        timeout=180,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: data.local_dir=") and "nowhere" in last
