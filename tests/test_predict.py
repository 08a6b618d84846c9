"""sweep/predict.py, as a user runs it on the smoke grid's checkpoints: the predictions for a run's
test texts are the ones the run wrote, every way of passing texts works, bad input gets one line."""

import io
import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from helpers.app import REPO, app_env
from sweep.predict import main as predict_main

CELLS = ["experiment=smoke,model=bert,pooling=cls", "experiment=smoke,model=modernbert,pooling=mean"]


def predict(*args, stdin=None):
    return subprocess.run(
        [sys.executable, str(REPO / "sweep" / "predict.py"), *map(str, args)],
        cwd=REPO,
        env=app_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def the_test_split(run_dir):
    """The run's test split: its texts, rebuilt from the saved config, in predictions_test.parquet's order."""
    from omegaconf import OmegaConf

    from sweep.data.sources import load_raw

    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    written = pd.read_parquet(run_dir / "predictions_test.parquet")
    texts = load_raw(cfg.data).to_pandas().set_index("idx").loc[written["index"], "text"].tolist()
    return texts, written


@pytest.mark.parametrize("cell", CELLS)
def test_predictions_for_the_test_texts_are_the_runs_own(smoke_sweep, tmp_path, cell):
    run_dir = smoke_sweep / cell
    texts, written = the_test_split(run_dir)
    pd.DataFrame({"review": texts}).to_json(tmp_path / "test.jsonl", orient="records", lines=True)
    # in-process: what is checked is the file it writes; the CLI's own output is checked below
    argv = [run_dir, "--file", tmp_path / "test.jsonl", "--text-column", "review", "--out", tmp_path / "p.csv"]
    assert predict_main([str(arg) for arg in argv]) == 0
    predicted = pd.read_csv(tmp_path / "p.csv")
    assert list(predicted.columns) == ["label", "class_id", "prob_neg", "prob_pos"]
    assert len(predicted) == len(written) > 300
    assert (predicted["class_id"].to_numpy() == written["pred"].to_numpy()).all()
    assert predicted["label"].tolist() == [["neg", "pos"][i] for i in written["pred"]]
    # the run padded to max_len, predict.py to each batch's longest: the same numbers up to rounding
    assert predicted["prob_pos"].to_numpy() == pytest.approx(written["prob_pos"].to_numpy(), abs=1e-4)
    assert (predicted["prob_neg"] + predicted["prob_pos"]).to_numpy() == pytest.approx(1.0, abs=1e-5)


def test_texts_from_arguments_stdin_and_a_txt_file_give_the_same_rows(smoke_sweep, tmp_path, capsys):
    best = smoke_sweep / CELLS[0] / "best"  # a best/ dir works as well as its run dir
    texts = ["the acting was superb . the plot was not dull .", "the music was awful .", "the ending was boring ."]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    # stdin through the real command line; the other two ways in-process, on the same main()
    piped = predict(best, "--format", "jsonl", stdin="\n".join(texts))
    assert piped.returncode == 0, piped.stderr
    outputs = [piped.stdout]
    for argv in (
        [best, *texts, "--format", "jsonl"],
        [best.parent, "--file", tmp_path / "texts.txt", "--format", "jsonl"],
    ):
        assert predict_main([str(arg) for arg in argv]) == 0
        outputs.append(capsys.readouterr().out)
    rows = [[json.loads(line) for line in output.splitlines()] for output in outputs]
    assert rows[0] == rows[1] == rows[2] and len(rows[0]) == 3
    assert all(row["label"] in ("neg", "pos") and row["class_id"] in (0, 1) for row in rows[0])


def test_options_go_before_between_or_after_the_texts(smoke_sweep, capsys):
    run_dir = str(smoke_sweep / CELLS[0])
    texts = ["the acting was superb .", "the music was awful ."]
    outputs = []
    for argv in (
        [run_dir, "--format", "jsonl", "--batch-size", "1", *texts],
        [run_dir, texts[0], "--format", "jsonl", texts[1], "--batch-size", "1"],
        [run_dir, *texts, "--format", "jsonl", "--batch-size", "1"],
    ):
        assert predict_main(argv) == 0, argv
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == outputs[2] and len(outputs[0].splitlines()) == 2


def test_rows_come_back_in_input_order_whatever_their_lengths(smoke_sweep, capsys):
    """predict.py batches texts of like length together (shortest first) and writes the rows back in
    the order given: each row is the one the text gets alone."""
    run_dir = str(smoke_sweep / CELLS[1])
    texts = [
        "the acting was superb and the music was lovely , a film to see again and again .",
        "awful .",
        "the plot was dull .",
        "superb .",
        "the music was awful and the acting was poor , a film to forget .",
    ]
    assert predict_main([run_dir, "--batch-size", "2", *texts]) == 0
    together = pd.read_csv(io.StringIO(capsys.readouterr().out))
    alone = []
    for text in texts:
        assert predict_main([run_dir, text]) == 0
        alone.append(pd.read_csv(io.StringIO(capsys.readouterr().out)))
    alone = pd.concat(alone, ignore_index=True)
    assert together["label"].tolist() == alone["label"].tolist()
    assert together["prob_pos"].to_numpy() == pytest.approx(alone["prob_pos"].to_numpy(), abs=1e-5)


def test_bad_input_gets_one_line_naming_it(smoke_sweep, tmp_path, capsys):
    run_dir = smoke_sweep / CELLS[0]
    damaged_weights, damaged_meta = tmp_path / "damaged_weights", tmp_path / "damaged_meta"
    for damaged in (damaged_weights, damaged_meta):
        shutil.copytree(run_dir / "best", damaged / "best")
    weights = damaged_weights / "best" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a copy cut short
    (damaged_meta / "best" / "classifier.json").write_text('{"max_len": 12')
    (tmp_path / "empty.txt").write_text("\n")
    pd.DataFrame({"review": ["a fine film"]}).to_csv(tmp_path / "reviews.csv", index=False)
    pd.DataFrame({"review": ["a fine film"], "title": ["fine"]}).to_csv(tmp_path / "pairs.csv", index=False)
    cases = {
        (tmp_path / "nowhere", "a text"): "no such run dir",
        (tmp_path, "a text"): "holds no saved classifier",
        (run_dir, "--file", tmp_path / "empty.txt"): "is empty",
        (run_dir, "--file", tmp_path / "reviews.csv"): "has no column 'text'",
        (run_dir, "--file", tmp_path / "missing.csv"): "no such file",
        (run_dir, "--file", tmp_path / "reviews.csv", "--text-column", "review", "--pair-column", "title"): (
            "has no column 'title'"
        ),
        (run_dir, "a text", "--pair-column", "review"): "needs a table file",
        (damaged_weights, "a text"): "does not load (SafetensorError",
        (damaged_meta, "a text"): "classifier.json' does not load (JSONDecodeError",
        (run_dir, "--file", tmp_path / "pairs.csv", "--text-column", "review", "--pair-column", "title"): (
            "trained on single texts, not pairs"
        ),
    }
    for args, expected in cases.items():
        code = predict_main([str(arg) for arg in args])
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and expected in lines[0], (args, err)
        assert out == ""
