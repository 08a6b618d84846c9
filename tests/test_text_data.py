"""data=text and its presets on local files (the hub is unreachable here), labels of any type and
number, the imdb and synthetic data unchanged by them."""

import hashlib
import io
import json

import pandas as pd
import pytest
from omegaconf import OmegaConf

import sweep.launch.config_store  # noqa: F401  (registers the config schema that config.yaml names)
from helpers.app import IMDB_DIR, needs_imdb, train_in_process
from helpers.data_files import data_config, predict_main, write
from sweep.data.loaders import tokenize
from sweep.data.sources import generate_synthetic, load_raw, prepare_splits
from sweep.errors import DataError
from sweep.model.tiny import train_tokenizer

TOPICS = ["sports", "world", "business", "science"]


def labelled_rows(n: int, labels, offset: int = 0) -> pd.DataFrame:
    """Distinct texts whose words name their label, so a split's labels can be checked from its texts."""
    chosen = [labels[i % len(labels)] for i in range(n)]
    return pd.DataFrame(
        {"text": [f"row {offset + i} about {label}" for i, label in enumerate(chosen)], "label": chosen}
    )


def split_hashes(splits):
    return {name: hashlib.sha256(str(list(ds["idx"])).encode()).hexdigest()[:16] for name, ds in splits.items()}


@pytest.mark.slow
@needs_imdb
def test_imdb_splits_are_those_of_before_the_text_data():
    """The same rows in each split, the same datasets fingerprints (so the same tokenization cache)
    and the same label names as before data=text existed (values recorded before the change)."""
    splits = prepare_splits(data_config("imdb", f"data.local_dir={IMDB_DIR}"))
    assert split_hashes(splits) == {
        "train": "87fdbfa4896b2224",
        "valid": "fd424369090dc5aa",
        "test": "80ecfb59ac672442",
    }
    # the tokenization cache is keyed by these; they hash the files' paths and mtimes, so they are
    # compared between two loads here, not with numbers from another machine
    again = prepare_splits(data_config("imdb", f"data.local_dir={IMDB_DIR}"))
    assert [ds._fingerprint for ds in again.values()] == [ds._fingerprint for ds in splits.values()]
    assert splits["train"].features["label"].names == ["neg", "pos"]


def test_synthetic_two_classes_unchanged_and_four_classes_balanced():
    two = load_raw(data_config("synthetic", "data.n_samples=300"))
    assert two["text"] == generate_synthetic(300)["text"] and two["label"] == generate_synthetic(300)["label"]
    four = prepare_splits(data_config("synthetic", "data.n_samples=800", "data.n_classes=4"))
    assert four["train"].features["label"].names == ["film", "food", "hotel", "phone"]
    counts = pd.Series(four["train"]["label"]).value_counts()
    assert len(counts) == 4 and counts.min() > 0.2 * len(four["train"])
    assert len(four["test"]) == pytest.approx(0.1 * sum(len(ds) for ds in four.values()), abs=2)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_given_splits_of_a_local_dir_with_string_labels(tmp_path, suffix):
    """Files found by name, any format; string labels -> ids in sorted order, names recorded."""
    write(labelled_rows(80, TOPICS), tmp_path / f"train{suffix}")
    write(labelled_rows(12, TOPICS, offset=100), tmp_path / f"validation{suffix}")
    write(labelled_rows(16, TOPICS, offset=200), tmp_path / f"test{suffix}")
    splits = prepare_splits(data_config("text", f"data.local_dir={tmp_path}", "data.use_given_splits=true"))
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [80, 12, 16]
    names = splits["train"].features["label"].names
    assert names == sorted(TOPICS)
    for ds in splits.values():
        assert all(name_of in text for text, name_of in zip(ds["text"], (names[i] for i in ds["label"])))
    assert splits["test"]["text"][0] == "row 200 about sports"  # the given test split, in its own order


def test_ag_news_schema_given_train_and_test_carves_valid(tmp_path):
    """ag_news: integer labels 0-3, train and test given: a valid split the size of test is carved from train."""
    write(labelled_rows(200, [0, 1, 2, 3]), tmp_path / "train.jsonl")
    write(labelled_rows(40, [0, 1, 2, 3], offset=1000), tmp_path / "test.jsonl")
    splits = prepare_splits(data_config("ag_news", f"data.local_dir={tmp_path}"))
    assert splits["train"].features["label"].num_classes == 4
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [160, 40, 40]
    assert not set(splits["valid"]["text"]) & set(splits["train"]["text"])
    assert pd.Series(splits["valid"]["label"]).value_counts().tolist() == [10] * 4  # stratified


def test_sst2_schema_with_withheld_test_labels_carves_test_from_train(tmp_path):
    """sst2: a `sentence` column and a test split labelled -1 (GLUE withholds them): the given
    validation is kept, the test split is carved from train at the validation's size."""
    rows = lambda n, offset: labelled_rows(n, [0, 1], offset).rename(columns={"text": "sentence"})  # noqa: E731
    write(rows(100, 0), tmp_path / "train.parquet")
    write(rows(20, 500), tmp_path / "validation.parquet")
    write(rows(30, 900).assign(label=-1), tmp_path / "test.parquet")
    cfg = data_config("sst2", f"data.local_dir={tmp_path}")
    splits = prepare_splits(cfg)
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [80, 20, 20]
    assert all(text.startswith("row 5") for text in splits["valid"]["text"])  # the given validation rows
    assert all(int(text.split()[1]) < 100 for text in splits["test"]["text"])  # carved from train
    assert prepare_splits(cfg)["test"]["idx"] == splits["test"]["idx"]  # seeded


def test_explicit_files_merged_and_split_8_1_1(tmp_path):
    """data.files with use_given_splits=false (the default): all rows merged, dedup, stratified 8:1:1."""
    a = write(labelled_rows(150, ["bad", "good"]), tmp_path / "a.csv")
    b = write(labelled_rows(50, ["bad", "good"], offset=150), tmp_path / "b.jsonl")
    splits = prepare_splits(data_config("text", f"data.files={{train: {a}, test: {b}}}"))
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [160, 20, 20]
    assert [sum(ds["label"]) for ds in splits.values()] == [80, 10, 10]


def test_text_pairs_are_tokenized_as_pairs(tmp_path):
    frame = pd.DataFrame(
        {
            "premise": [f"a man sits {i}" for i in range(40)],
            "hypothesis": ["a man stands"] * 40,
            "y": ["no", "yes"] * 20,
        }
    )
    write(frame, tmp_path / "train.csv")
    cfg = data_config(
        "text",
        f"data.local_dir={tmp_path}",
        "data.text_column=premise",
        "data.text_pair_column=hypothesis",
        "data.label_column=y",
    )
    splits = prepare_splits(cfg)
    tokenizer = train_tokenizer(list(splits["train"]["text"]) + list(splits["train"]["text_pair"]), "bert", 200)
    encoded = tokenize(splits, tokenizer, 32, ["input_ids", "token_type_ids", "attention_mask"])
    row = encoded["train"][0]
    assert row["input_ids"].count(tokenizer.sep_token_id) == 2 and 1 in row["token_type_ids"]
    assert row["input_ids"] == tokenizer(splits["train"][0]["text"], splits["train"][0]["text_pair"])["input_ids"]


@pytest.mark.parametrize(
    "frame, overrides, message",
    [
        (
            pd.DataFrame({"review": ["a", "b"], "label": [0, 1]}),
            [],
            r"train split lacks column\(s\) \['text'\]; found \['review', 'label'\]",
        ),
        (
            pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", 1, "y"]}),
            [],
            r"labels must be all integers or all strings",
        ),
        (
            pd.DataFrame({"text": ["a", "b"], "label": ["x", "x"]}),
            [],
            r"1 class\(es\) \['x'\]; a classifier needs at least 2",
        ),
    ],
)
def test_bad_text_data_gets_one_line(tmp_path, frame, overrides, message):
    write(frame, tmp_path / "train.jsonl")
    with pytest.raises(DataError, match=message) as error:
        prepare_splits(data_config("text", f"data.local_dir={tmp_path}", *overrides))
    assert "\n" not in str(error.value)


def test_bad_sources_name_the_bad_value(tmp_path, monkeypatch):
    (tmp_path / "train.txt").write_text("a\n")
    with pytest.raises(DataError, match=r"data.local_dir='.*' holds no train/validation/test file"):
        prepare_splits(data_config("text", f"data.local_dir={tmp_path}"))
    with pytest.raises(DataError, match=r"data file '.*train.txt' has an unknown format; use one of .csv"):
        prepare_splits(data_config("text", f"data.files={{train: {tmp_path / 'train.txt'}}}"))
    with pytest.raises(DataError, match=r"data.files names split\(s\) \['training'\]; use train, validation"):
        write(labelled_rows(4, [0, 1]), tmp_path / "a.csv")
        prepare_splits(data_config("text", f"data.files={{training: {tmp_path / 'a.csv'}}}"))
    with pytest.raises(DataError, match=r"data=text needs data.local_dir=DIR"):
        prepare_splits(data_config("text"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"cannot load data.hub_id='fancyzhx/ag_news' .*data.local_dir=DIR") as error:
        prepare_splits(data_config("ag_news"))
    assert "\n" not in str(error.value)


def test_a_run_on_local_sentence_pairs_with_string_labels(tmp_path):
    """The whole run on data=text: given splits kept, rows without a text dropped and counted, 3
    string classes -> head of 3, names in best/."""
    data = tmp_path / "data"
    data.mkdir()
    names = ["neutral", "entailment", "contradiction"]
    for split, n, offset in (("train", 240, 0), ("validation", 30, 1000), ("test", 36, 2000)):
        rows = labelled_rows(n, names, offset)
        rows = rows.assign(hypothesis=rows["label"].map(lambda name: f"it is {name}"))
        if split == "train":  # a CSV with two empty cells (read as missing) and a blank one: dropped, counted
            rows.loc[[5, 6], "text"], rows.loc[7, "hypothesis"] = None, "  "
        write(rows, data / f"{split}.{'csv' if split == 'train' else 'jsonl'}")
    run_dir = tmp_path / "run"
    train_in_process(
        "data=text",
        f"data.local_dir={data}",
        "data.use_given_splits=true",
        "data.text_pair_column=hypothesis",
        "data.max_len=32",
        "model.tiny=true",
        "trainer.epochs=1",
        "trainer.batch_size=32",
        "optim.lr=2e-3",
        "logger=none",
        f"hydra.run.dir={run_dir}",
        multirun=False,
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["test_samples"] == 36 and metrics["test/f1"] is None
    assert metrics["train_samples"] == 237
    said = "train split: dropped 3 of 240 rows: 2 with a missing text, 1 with a whitespace-only text pair"
    assert said in (run_dir / "train.log").read_text()
    best = json.loads((run_dir / "best" / "classifier.json").read_text())
    assert best["num_labels"] == 3 and best["label_names"] == sorted(names)
    predictions = pd.read_parquet(run_dir / "predictions_test.parquet")
    assert list(predictions.columns) == ["index", "label", "pred", "prob_0", "prob_1", "prob_2"]

    # predict.py takes the pairs from a table file and gives the run's own predictions for them
    rows = load_raw(OmegaConf.load(run_dir / ".hydra" / "config.yaml").data).to_pandas().set_index("idx")
    test_rows = rows.loc[predictions["index"]]
    pairs_file = tmp_path / "pairs.csv"
    test_rows.rename(columns={"text": "premise"})[["premise", "text_pair"]].to_csv(pairs_file, index=False)
    predicted = predict_main(run_dir, "--file", pairs_file, "--text-column", "premise", "--pair-column", "text_pair")
    assert predicted.returncode == 0, predicted.stderr
    table = pd.read_csv(io.StringIO(predicted.stdout))
    assert list(table.columns) == ["label", "class_id"] + [f"prob_{name}" for name in sorted(names)]
    assert (table["class_id"].to_numpy() == predictions["pred"].to_numpy()).all()
    assert table["label"].tolist() == [sorted(names)[i] for i in predictions["pred"]]
    # without the second texts it would classify inputs of a shape it never saw: refused
    single = predict_main(run_dir, "--file", pairs_file, "--text-column", "premise")
    assert single.returncode == 2 and "was trained on sentence pairs" in single.stderr
    assert "--pair-column" in single.stderr and len(single.stderr.strip().splitlines()) == 1


def test_hub_path_keeps_a_classlabels_names_and_ignores_other_splits(monkeypatch):
    """The hub is unreachable here: load_dataset stands in with ag_news's schema (a ClassLabel of 4
    names) plus an unlabelled extra split, as imdb's `unsupervised` on the hub."""
    from datasets import ClassLabel, Dataset, DatasetDict

    import sweep.data.text_files

    names = ["World", "Sports", "Business", "Sci/Tech"]

    def part(n, offset):
        rows = labelled_rows(n, [0, 1, 2, 3], offset)
        return Dataset.from_pandas(rows).cast_column("label", ClassLabel(names=names))

    fake = DatasetDict(train=part(120, 0), test=part(20, 500), unsupervised=part(8, 900))
    asked = []
    monkeypatch.setattr(sweep.data.text_files, "load_dataset", lambda *args: asked.append(args) or fake)
    splits = prepare_splits(data_config("ag_news"))
    assert asked == [("fancyzhx/ag_news", None)]
    assert splits["train"].features["label"].names == names  # the hub's own order, not sorted
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [100, 20, 20]
