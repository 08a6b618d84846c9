"""Bad input fails before any training, in one line that names the bad value and what would work,
and the run dir says so (status failed) without a history of epochs that never ran; the terminal
gets that line and no traceback (train.log keeps it). Rows without a text are dropped and counted;
a disk that fills mid-run is one line naming the file, with every earlier file intact."""

import logging
import os
import random
import subprocess

import pandas as pd
import pytest
import torch

from helpers.app import train, train_in_process
from helpers.rundirs import compose_config, metrics
from sweep.data.sources import prepare_splits
from sweep.errors import InputError, WriteError
from sweep.job.runner import run
from sweep.model import device


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


def test_more_pooled_layers_than_the_model_has(tmp_path):
    assert failed_run(tmp_path, "pooling.layers=3") == "pooling.layers=3: model 'bert' has 2 layers; use 1 to 2"


def test_lora_adapters_on_modules_the_model_lacks_name_its_linear_layers(tmp_path):
    message = failed_run(tmp_path, "method=lora", "method.target_modules=[query,qkv]")
    assert message == (
        "method.target_modules: ['qkv'] not in model_type 'bert'; its linear layers are dense, key, query, value"
    )


def test_lora_on_a_family_without_default_targets_asks_for_them():
    from transformers import DistilBertConfig, DistilBertModel

    from sweep.model.regimes import lora_targets

    encoder = DistilBertModel(DistilBertConfig(vocab_size=100, dim=32, n_layers=1, n_heads=2, hidden_dim=64))
    with pytest.raises(InputError) as caught:
        lora_targets(encoder, None)
    message = str(caught.value)
    assert "model_type 'distilbert'" in message and "set method.target_modules" in message
    assert "k_lin, lin1, lin2, out_lin, q_lin, v_lin" in message
    assert lora_targets(encoder, ["q_lin", "v_lin"]) == ["q_lin", "v_lin"]


def test_hub_model_that_cannot_be_reached(tmp_path):
    message = failed_run(tmp_path, "model=bert", "model.tiny=false")
    assert "model.id='bert-base-uncased'" in message and "HF_HUB_OFFLINE=1" in message
    assert "local directory" in message


def test_the_cli_prints_one_line_and_exits_non_zero_before_any_training(tmp_path):
    run_dir = tmp_path / "run"
    overrides = ["experiment=smoke", "logger=none", "optim.lr=-1", "trainer.batch_size=0", f"hydra.run.dir={run_dir}"]
    result = train(*overrides, multirun=False, check=False, timeout=180)
    assert result.returncode != 0
    said = result.stdout + result.stderr
    assert "Traceback" not in said
    line = "error: optim.lr=-1.0: must be a number > 0; trainer.batch_size=0: must be an integer >= 1"
    assert result.stderr.strip().splitlines()[-1] == line
    assert [row for row in said.splitlines() if "must be" in row] == [line]
    assert "Traceback" in (run_dir / "train.log").read_text()  # for whoever debugs
    assert metrics(run_dir)["status"] == "failed" and not (run_dir / "history.csv").exists()


def test_an_unexpected_error_shows_its_traceback_once(tmp_path, monkeypatch):
    """A bug (here a step of the recipe made to raise) is not the user's: its traceback is shown, once."""

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the recipe")

    monkeypatch.setattr("sweep.job.runner.prepare", broken)
    for multirun, where in ((False, "hydra.run.dir"), (True, "hydra.sweep.dir")):
        overrides = ["experiment=smoke", "logger=none", f"{where}={tmp_path / str(multirun)}"]
        result = train_in_process(*overrides, multirun=multirun, check=False)
        said = result.stdout + result.stderr
        assert result.returncode != 0 and said.count("Traceback") == 1 and "a bug in the recipe" in said


def test_a_cuda_device_this_machine_lacks_is_named_with_what_it_has(tmp_path, monkeypatch):
    if not torch.cuda.is_available():
        message = failed_run(tmp_path, "trainer.device=cuda:5")
        assert message == "trainer.device='cuda:5': this machine has no CUDA GPU; use auto or cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with 2 GPUs
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device.resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(InputError) as refused:
        device.resolve_device("cuda:5")
    assert str(refused.value) == (
        "trainer.device='cuda:5': this machine has 2 CUDA GPU(s), cuda:0, cuda:1; use one, cuda or auto"
    )


def text_dir(tmp_path, train: pd.DataFrame, test_rows: int = 20):
    """data=text over a dir holding this train.csv and a test.csv of test_rows labelled rows (none: no test.csv)."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    train.to_csv(data / "train.csv", index=False)
    (data / "test.csv").unlink(missing_ok=True)
    if test_rows:
        labels = sorted(train["label"].unique()) or [0, 1]  # of the train split's kind
        test = {
            "text": [f"test row {i}" for i in range(test_rows)],
            "label": [labels[i % len(labels)] for i in range(test_rows)],
        }
        pd.DataFrame(test).to_csv(data / "test.csv", index=False)
    return data


def test_a_data_file_without_rows_is_named(tmp_path):
    data = text_dir(tmp_path, pd.DataFrame({"text": [], "label": []}))
    message = failed_run(tmp_path, "data=text", f"data.local_dir={data}")
    assert message == f"data file '{data}/train.csv' holds no rows; the train split needs some"


def test_a_data_file_that_is_not_text_is_named_with_where_it_breaks(tmp_path):
    data = text_dir(tmp_path, pd.DataFrame({"text": ["a"], "label": [0]}))
    (data / "train.csv").write_bytes(random.Random(0).randbytes(3000))
    message = failed_run(tmp_path, "data=text", f"data.local_dir={data}")
    assert message.startswith(f"data file '{data}/train.csv' cannot be read as csv: UnicodeDecodeError: ")
    assert "in position" in message


def test_data_too_small_to_split_by_class_names_its_counts_and_the_smallest_that_splits(tmp_path):
    data = text_dir(tmp_path, pd.DataFrame({"text": ["good", "bad", "fine"], "label": ["pos", "neg", "pos"]}), 0)
    message = failed_run(tmp_path, "data=text", f"data.local_dir={data}")
    assert message.startswith("3 rows (neg 1, pos 2) are too few for a split by class with data.split=[0.8, 0.1, 0.1]")
    assert message.endswith("the smallest data that splits holds 8 rows of each class (16 rows)")
    rows = pd.DataFrame({"text": [f"review {i}" for i in range(16)], "label": ["neg", "pos"] * 8})
    cfg = compose_config("data=text", f"data.local_dir={text_dir(tmp_path, rows, 0)}")
    assert sum(len(split) for split in prepare_splits(cfg.data).values()) == 16  # the smallest does split
    given = compose_config(
        "data=text", f"data.local_dir={text_dir(tmp_path, rows.head(3), 4)}", "data.use_given_splits=true"
    )
    with pytest.raises(InputError) as refused:  # a valid split carved from too small a train split
        prepare_splits(given.data)
    assert str(refused.value).startswith("the train split (3 rows: neg 2, pos 1) is too small to carve a valid split")


def test_rows_with_a_missing_or_blank_text_are_dropped_before_dedup_and_counted(tmp_path, caplog):
    texts = [f"review {i}" for i in range(40)]
    texts[3] = texts[17] = None  # empty cells: the CSV reader gives None
    texts[25] = "   "
    data = text_dir(tmp_path, pd.DataFrame({"text": texts, "label": [i % 2 for i in range(40)]}))
    with caplog.at_level(logging.INFO, logger="sweep.data.text_files"):
        splits = prepare_splits(compose_config("data=text", f"data.local_dir={data}").data)
    assert sum(len(split) for split in splits.values()) == 57
    assert all(text.strip() for split in splits.values() for text in split["text"])
    assert "train split: dropped 3 of 40 rows: 2 with a missing text, 1 with a whitespace-only text" in caplog.text


@pytest.fixture
def full_disk(tmp_path):
    """A real file system with room for the run's first files, not for its resumable state."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)]).returncode == 0
    )
    if not mounted:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=True)  # lazy: a file a failed test left open


def test_a_disk_that_fills_mid_run_is_one_line_and_the_files_before_it_stay_intact(full_disk):
    run_dir = full_disk / "run"
    with pytest.raises(WriteError) as refused:
        run(compose_config("experiment=smoke", "logger=none", "trainer.epochs=1"), run_dir)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(
        f"cannot write {run_dir}/resume_state.pt: no space left on device"
    )
    assert message.endswith("the files written before it are intact")
    assert metrics(run_dir)["status"] == "failed" and metrics(run_dir)["error"] == f"WriteError: {message}"
    assert len(pd.read_csv(run_dir / "history.csv")) == 1  # epoch 1's row, written before the state
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]  # no half-written file left
