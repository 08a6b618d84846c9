"""sweep/export.py and predict.py --backend onnx|onnx-int8, as a user runs them on tiny runs: the
export serves the labels the run's torch checkpoint gave, with no torch import; it lands in the model
card and collect's table; bad input gets one line and changes nothing."""

import hashlib
import json
import logging
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_predict import the_test_split

from helpers.app import REPO, app_env
from helpers.rundirs import metrics, run_dirs
from sweep.bench import main as bench_main
from sweep.collect import main as collect
from sweep.export import main as export_main
from sweep.predict import main as predict_main

SMOKE_CELL = "experiment=smoke,model=modernbert,pooling=mean"  # ModernBERT: local and global attention layers


def exported_copy(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of a shared run (the tests only read those), exported with int8; the process's logging
    left as it was (a root logger raised to ERROR silenced every later warning of the process)."""
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    levels = logging.getLogger().level, logging.getLogger("sweep").getEffectiveLevel()
    assert export_main([str(copy), "--quantize", "int8"]) == 0
    assert (logging.getLogger().level, logging.getLogger("sweep").getEffectiveLevel()) == levels
    return copy


def assert_backends_give_the_runs_labels(run_dir: Path, tmp_path: Path) -> None:
    """predict.py on the run's test texts: onnx gives every label the run's torch checkpoint wrote
    (predictions_test.parquet), onnx-int8 at least 95% of them (tiny models: thin margins)."""
    texts, written = the_test_split(run_dir)
    pd.DataFrame({"text": texts}).to_json(tmp_path / "test.jsonl", orient="records", lines=True)
    for backend, least in (("onnx", 1.0), ("onnx-int8", 0.95)):
        out = tmp_path / f"{backend}.csv"
        argv = [str(run_dir), "--file", str(tmp_path / "test.jsonl"), "--backend", backend, "--out", str(out)]
        assert predict_main(argv) == 0
        predicted = pd.read_csv(out)
        assert list(predicted.columns) == ["label", "class_id", "prob_neg", "prob_pos"]
        share = (predicted["class_id"].to_numpy() == written["pred"].to_numpy()).mean()
        assert len(predicted) == len(written) and share >= least, (run_dir.name, backend, share)
        if backend == "onnx":
            assert predicted["prob_pos"].to_numpy() == pytest.approx(written["prob_pos"].to_numpy(), abs=1e-4)
    record = json.loads((run_dir / "best" / "onnx" / "export.json").read_text())
    assert record["failed_check"] == [], record["failed_check"]
    assert record["check"]["onnx"]["agreement"] == 1.0 and record["check"]["onnx"]["max_prob_diff"] <= 1e-4


@pytest.fixture(scope="module")
def exported_run(smoke_sweep, tmp_path_factory):
    """A copy of a smoke cell exported with int8, for this file's tests to read."""
    return exported_copy(smoke_sweep / SMOKE_CELL, tmp_path_factory.mktemp("exported"))


def test_an_export_serves_the_runs_labels_without_torch_and_shows_in_the_card_and_the_table(
    exported_run, smoke_sweep, tmp_path, capsys
):
    run_dir = exported_run
    onnx_dir = run_dir / "best" / "onnx"
    record = json.loads((onnx_dir / "export.json").read_text())
    for name in ("model.onnx", "model_int8.onnx", "tokenizer.json", "classifier.json"):
        assert (onnx_dir / name).is_file(), name
    digest = hashlib.sha256()
    for path in sorted((run_dir / "best").glob("*.safetensors")):
        digest.update(path.name.encode() + path.read_bytes())
    assert record["source"]["weights_sha256"] == digest.hexdigest()
    assert record["opset"] >= 18 and record["inputs"] == ["input_ids", "attention_mask"]  # ModernBERT: no type ids
    # ONNX Runtime's fused attention (with its rotary embedding) serves it, checked like any graph below
    assert record["fusions"]["sdpa"] == record["fusions"]["rotary_embedding"] / 2 == 2, record["fusions"]
    assert record["check"]["rows"] == metrics(run_dir)["test_samples"]  # under 1,000: all of them
    # int8 with 7-bit weights (the same integers on CPUs with VNNI and without), and the CPU it ran on
    int8 = record["int8"]
    assert (int8["weight_type"], int8["reduce_range"], int8["per_channel"], int8["kept_fp32"]) == (
        "int8",
        True,
        True,
        [],
    )
    assert "every x86-64 CPU" in int8["holds_on"] and set(int8["exported_on"]) >= {"model", "avx2", "vnni"}
    assert_backends_give_the_runs_labels(run_dir, tmp_path)

    # serving: the onnx path of predict.py, in a fresh interpreter, never imports torch
    script = (
        "import sys; from sweep.predict import main; code = main(sys.argv[1:]); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)"
    )
    served = subprocess.run(
        [sys.executable, "-c", script, str(run_dir), "the plot was dull .", "--backend", "onnx-int8"],
        cwd=REPO,
        env=app_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert served.returncode == 0, served.stderr
    # a damaged export (a copy cut short): one line for predict.py and bench.py --inference, no traceback
    damaged = tmp_path / "damaged"
    shutil.copytree(run_dir, damaged)
    int8 = damaged / "best" / "onnx" / "model_int8.onnx"
    int8.write_bytes(int8.read_bytes()[:2000])
    capsys.readouterr()
    assert predict_main([str(damaged), "--backend", "onnx-int8", "a text"]) == 2
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and "the export in" in message and "does not load" in message, message
    assert served.stdout.splitlines()[0] == "label,class_id,prob_neg,prob_pos" and len(served.stdout.splitlines()) == 2

    # the model card: the hub's metadata block with the run's test figures, then the export and its agreement
    card = (run_dir / "best" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert (meta["library_name"], meta["pipeline_tag"]) == ("transformers", "text-classification")
    figures = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert figures["test accuracy"] == round(metrics(run_dir)["test/acc"], 4)
    assert "## ONNX export" in card and "| onnx-int8 | " in card and f"seed {metrics(run_dir)['seed']}" in card

    # the serving benchmark: every backend at batch 1 and 32, side by side
    assert bench_main(["--inference", str(run_dir), "--rounds", "1", "--threads", "1"]) == 0
    printed = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in printed if line.split()[:1] in (["torch"], ["onnx"], ["onnx-int8"])]
    assert sorted((row[0], int(row[1])) for row in rows) == [
        (backend, batch) for backend in ("onnx", "onnx-int8", "torch") for batch in (1, 32)
    ]
    assert all(float(row[2]) > 0 for row in rows)
    assert any(line.startswith("CPU: ") for line in printed)  # int8's figures depend on the CPU's instruction sets

    # collect: the int8 export's samples/s beside torch's; empty for a run not exported
    other = smoke_sweep / "experiment=smoke,model=bert,pooling=cls"
    assert collect([str(run_dir), str(other), "--out", str(tmp_path / "table")]) == 0
    table = pd.read_csv(tmp_path / "table" / "comparison.csv").set_index("run_dir")
    assert table.loc[str(run_dir), "onnx_int8_samples_per_s"] == pytest.approx(
        record["check"]["onnx-int8"]["samples_per_s"]
    )
    assert pd.isna(table.loc[str(other), "onnx_int8_samples_per_s"])
    assert "onnx int8 samples/s" in (tmp_path / "table" / "comparison.md").read_text()


def exit_code(command, argv) -> int:
    try:
        return command(argv)
    except SystemExit as exit:  # argparse's own errors
        return exit.code


def test_every_error_a_user_can_cause_is_one_line_for_every_backend(exported_run, smoke_sweep, tmp_path, capsys):
    """predict.py with each backend, export.py and bench.py --inference: exit 2, one line naming what is
    wrong, nothing on standard output."""
    import torch

    damaged = tmp_path / "damaged"
    shutil.copytree(exported_run, damaged)
    for name in ("model.safetensors", "onnx/model.onnx", "onnx/model_int8.onnx"):
        path = damaged / "best" / name
        path.write_bytes(path.read_bytes()[:2000])  # a copy cut short
    (tmp_path / "latin1.txt").write_bytes("une critique trop sévère\n".encode("latin-1"))
    (tmp_path / "cut.parquet").write_bytes(b"PAR1 and nothing more")
    pd.DataFrame({"review": ["a fine film"]}).to_csv(tmp_path / "reviews.csv", index=False)
    not_exported = smoke_sweep / "experiment=smoke,model=bert,pooling=cls"
    run, text = str(exported_run), "a fine film"
    for backend in ("torch", "onnx", "onnx-int8"):
        cases = [
            ([str(tmp_path / "nowhere"), text], "no such run dir"),
            ([str(damaged), text], "does not load"),
            ([run, text, "--batch-size", "0"], "--batch-size 0: must be at least 1"),
            ([run, text, "--batch-size", "all"], "invalid int value: 'all'"),
            ([run, "--file", str(tmp_path / "latin1.txt")], "cannot read"),
            ([run, "--file", str(tmp_path / "cut.parquet")], "cannot read"),
            ([run, "--file", str(tmp_path / "reviews.csv")], "has no column 'text'"),
            ([run, "--file", str(tmp_path / "missing.txt")], "no such file"),
            ([run, text, "--out", str(tmp_path / "no" / "dir.csv")], "cannot write --out"),
        ]
        if backend != "torch":
            cases.append(([str(not_exported), text], "export it first"))
        for argv, said in cases:
            code = exit_code(predict_main, [*argv, "--backend", backend])
            out, err = capsys.readouterr()
            assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and said in err, (backend, argv, err)
    # bench sets torch's threads in this process: given the worker's own, later runs here train as before
    threads = str(torch.get_num_threads())
    for command, argv, said in [
        (export_main, [run, "--check-rows", "0"], "--check-rows 0: must be at least 1"),
        (export_main, [run, "--quantize", "int4"], "invalid choice: 'int4'"),
        (bench_main, ["--inference", run, "--rounds", "0"], "--rounds 0: must be at least 1"),
        (bench_main, ["--inference", run, "--threads", "0"], "--threads 0: must be at least 1"),
        (bench_main, ["--inference", str(tmp_path / "nowhere"), "--threads", threads], "no such run dir"),
        (bench_main, ["--inference", str(damaged), "--threads", threads], "does not load"),
    ]:
        code = exit_code(command, argv)
        out, err = capsys.readouterr()
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and said in err, (argv, err)


def snapshot(directory: Path):
    return sorted((str(p.relative_to(directory)), p.stat().st_size, p.stat().st_mtime_ns) for p in directory.rglob("*"))


def export_as_another_user(run_dir: Path, tmp_path: Path):
    """(exit code, stderr) of an export by a user who may read the run dir but not write it: as root,
    a forked child that becomes nobody (root writes anywhere); else the run dir made read-only."""
    if os.geteuid() != 0:
        (run_dir / "best").chmod(0o555)
        try:
            return export_main([str(run_dir)]), None
        finally:
            (run_dir / "best").chmod(0o755)
    import onnx  # noqa: F401  imported before the fork: nobody may not read this venv
    import onnxruntime  # noqa: F401
    import onnxscript  # noqa: F401

    err = tmp_path / "stderr.txt"
    pid = os.fork()
    if pid == 0:  # the child: nobody, its stderr to a file
        code = 99
        try:
            sys.stderr = open(err, "w")  # opened as root; nobody may not create files here
            nobody = pwd.getpwnam("nobody")
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            code = export_main([str(run_dir)])
        finally:
            sys.stderr.flush()
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), err.read_text()


def test_bad_exports_get_one_line_naming_the_problem_and_change_nothing(smoke_sweep, tmp_path, capsys):
    source = smoke_sweep / SMOKE_CELL
    # a dir every user may read (pytest's tmp_path is root's alone), for the read-only case
    shared = Path(tempfile.mkdtemp(prefix="export-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        running, broken, fine, readonly = (shared / name for name in ("running", "broken", "fine", "readonly"))
        for copy in (running, broken, fine, readonly):
            shutil.copytree(source, copy)
        shutil.rmtree(running / "best")
        (running / "metrics.json").write_text(json.dumps({**metrics(source), "status": "running"}))
        (broken / "best" / "head.safetensors").write_bytes(b"not a safetensors file")
        cases = [
            ([str(running)], ["has no best/classifier.json", "status: running"]),
            ([str(broken)], ["the checkpoint in", "does not load"]),
            ([str(fine), "--opset", "7"], ["--opset 7", "opsets 18 to"]),
            (
                [str(fine), "--quantize", "int8", "--keep-fp32", "encoder.pooler"],
                ["--keep-fp32 encoder.pooler: not a layer kind", "encoder.layers.*.mlp.Wo"],
            ),
            ([str(shared / "nowhere")], ["no such run dir"]),
        ]
        for argv, said in cases:
            before = snapshot(shared)
            assert export_main(argv) == 2, argv
            message = capsys.readouterr().err.strip()
            assert "\n" not in message and all(s in message for s in said), (argv, message)
            assert snapshot(shared) == before, argv
        # the same damaged checkpoint: predict.py and bench.py --inference answer as export.py does. bench
        # sets torch's threads in this process: given the worker's own, the runs trained here later stay as they were
        import torch

        said_by_export = None
        for command in (
            export_main,
            lambda argv: predict_main([*argv, "a text"]),
            lambda argv: bench_main(["--inference", *argv, "--threads", str(torch.get_num_threads())]),
        ):
            assert command([str(broken)]) == 2
            message = capsys.readouterr().err.strip()
            assert "\n" not in message and "the checkpoint in" in message and "does not load" in message, message
            said_by_export = said_by_export or message.split("error: ", 1)[1]
            assert message.split("error: ", 1)[1] == said_by_export
        before = snapshot(readonly)
        code, message = export_as_another_user(readonly, tmp_path)
        message = (message if message is not None else capsys.readouterr().err).strip()
        assert code == 2 and "\n" not in message and "read-only" in message, (code, message)
        assert snapshot(readonly) == before
    finally:
        shutil.rmtree(shared)


@pytest.mark.slow
def test_every_pooling_family_of_both_families_exports_and_serves_the_runs_labels(learned_poolings_sweep, tmp_path):
    """cls_mean ([CLS] and the masked mean side by side) and attention (a learned query) on BERT and
    ModernBERT; ModernBERT's mean pooling in the fast test above."""
    cells = run_dirs(learned_poolings_sweep)
    assert sorted((metrics(d)["model"], metrics(d)["pooling"]) for d in cells) == [
        ("bert", "attention"),
        ("bert", "cls_mean"),
        ("modernbert", "attention"),
        ("modernbert", "cls_mean"),
    ]
    for cell in cells:
        assert_backends_give_the_runs_labels(exported_copy(cell, tmp_path / "runs"), tmp_path)


def test_a_missed_int8_check_names_the_layer_kinds_that_meet_it_and_keep_fp32_meets_it(
    smoke_sweep, tmp_path, capsys, monkeypatch
):
    """An agreement no int8 model reaches (over 100%): the check ranks every layer kind kept fp32 alone,
    names the costliest, and adds kinds in that order; the export with those --keep-fp32 flags then
    gives exactly the agreement it named (the same rows, the same quantization)."""
    import sweep.serve.export_check

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_sweep / "experiment=smoke,model=bert,pooling=cls", run_dir)
    monkeypatch.setattr(sweep.serve.export_check, "INT8_MIN_AGREEMENT", 1.01)
    assert export_main([str(run_dir), "--quantize", "int8"]) == 1
    said = capsys.readouterr().err.strip()
    found = json.loads((run_dir / "best" / "onnx" / "export.json").read_text())["int8"]["remedy"]
    by_kind = found["agreement_by_kind_kept_fp32"]
    assert found["costliest"] == max(by_kind, key=by_kind.get) and "encoder.encoder.layer.*.output.dense" in by_kind
    assert sorted(found["keep_fp32"]) == sorted(by_kind) and found["agreement"] == 1.0  # all kept: the fp32 graph
    assert "\n" not in said and f"costs the most is {found['costliest']}" in said and "--keep-fp32 'encoder." in said

    monkeypatch.setattr(sweep.serve.export_check, "INT8_MIN_AGREEMENT", 0.98)
    flags = [flag for kind in found["keep_fp32"] for flag in ("--keep-fp32", kind)]
    assert export_main([str(run_dir), "--quantize", "int8", *flags]) == 0
    record = json.loads((run_dir / "best" / "onnx" / "export.json").read_text())
    assert record["int8"]["kept_fp32"] == found["keep_fp32"] and "remedy" not in record["int8"]
    assert record["check"]["onnx-int8"]["agreement"] == found["agreement"] and record["failed_check"] == []
