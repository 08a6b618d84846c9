"""The experiment trackers against the real thing: the shared smoke grid's MLflow store (SQLite)
behind a real `mlflow server` on 127.0.0.1, read back through MlflowClient; its TensorBoard event files
read back with tensorboard's own reader; a run killed after its first validation and resumed is one
MLflow run with every step once; a tracker that is down costs the run nothing but a warning line."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest
import yaml

from helpers.app import app_env, start, train, train_in_process, wait_for_log
from helpers.rundirs import compose_config, metrics, run_dirs

pytest.importorskip("mlflow", reason='the mlflow extra: pip install -e ".[mlflow]"')
pytest.importorskip("tensorboard", reason='the tensorboard extra: pip install -e ".[tensorboard]"')

from mlflow.tracking import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(smoke_sweep):
    """`mlflow server` on a free port of 127.0.0.1 over the SQLite store the shared smoke grid logged
    to (tests/conftest.py), stopped at the end. Those runs' artifact URIs are local paths (file://):
    a client on this machine reads them itself, through no artifact proxy."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{smoke_sweep.parent / 'mlflow.db'}", "--workers", "1"]
    server = subprocess.Popen(command, env=app_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    uri, deadline = f"http://127.0.0.1:{port}", time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            assert server.poll() is None and time.time() < deadline, server.stderr.read()[-3000:]
            time.sleep(0.3)
    yield uri
    server.terminate()
    server.wait(timeout=30)


def event_scalars(run_dir) -> EventAccumulator:
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return events


def steps_of(client, run_id: str, key: str):
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def assert_same_series(found, steps, values) -> None:
    """(step, value) pairs equal to the run dir's: the same steps, each once, the same values."""
    assert [step for step, _ in found] == list(steps)
    assert [value for _, value in found] == pytest.approx(list(values))


@pytest.mark.slow
def test_the_smoke_grid_logs_to_mlflow_and_tensorboard_at_once_read_back_through_a_real_server(
    smoke_sweep, mlflow_server, tmp_path
):
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("synthetic")  # the data set's name: one experiment per project
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    dirs = run_dirs(smoke_sweep)
    assert sorted(runs) == sorted(d.name for d in dirs)  # one MLflow run per run dir, named as the dir
    for run_dir in dirs:
        run, recorded = runs[run_dir.name], metrics(run_dir)
        assert run.info.status == "FINISHED" and run.data.tags["status"] == "completed"
        assert (run.data.tags["model"], run.data.tags["pooling"]) == (recorded["model"], recorded["pooling"])
        assert run.data.tags["sweep"] and (run_dir / "mlflow_id").read_text().strip() == run.info.run_id
        config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
        assert run.data.params["optim.lr"] == str(config["optim"]["lr"]) and run.data.params["seed"] == "42"
        history = pd.read_csv(run_dir / "history.csv")
        for column in ("valid/acc", "valid/loss", "train/loss"):  # every validation row, at its step
            assert_same_series(steps_of(client, run.info.run_id, column), history["step"], history[column])
        for key in ("test/acc", "test/macro_f1", "train_seconds", "test_samples_per_s"):
            assert run.data.metrics[key] == pytest.approx(recorded[key])
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert artifacts == {"metrics.json", "history.csv", "README.md", "best"}  # best/: logger.log_model
        # TensorBoard: the same scalars, and the hparams record of the cell with its final figures
        events = event_scalars(run_dir)
        found = [(e.step, e.value) for e in events.Scalars("valid/acc")]
        assert_same_series(found, history["step"], history["valid/acc"])
        assert events.Scalars("final/test/acc")[0].value == pytest.approx(recorded["test/acc"])
        assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    # best/ of each run, registered: a version per run, loaded back as the run's own classifier
    versions = client.search_model_versions("name='smoke-classifier'")
    assert sorted(v.run_id for v in versions) == sorted(run.info.run_id for run in runs.values())
    import mlflow
    import torch

    from sweep.model.classifier import Classifier

    mlflow.set_tracking_uri(mlflow_server)
    first = min(versions, key=lambda v: int(v.version))
    loaded = Classifier.from_pretrained(
        mlflow.artifacts.download_artifacts(f"models:/smoke-classifier/{first.version}", dst_path=str(tmp_path / "dl"))
    )
    run_dir = next(d for d in dirs if (d / "mlflow_id").read_text().strip() == first.run_id)
    saved = Classifier.from_pretrained(run_dir / "best").state_dict()
    assert all(torch.equal(value, saved[key]) for key, value in loaded.state_dict().items())


@pytest.mark.slow
def test_a_run_killed_after_its_first_validation_and_resumed_is_one_mlflow_run_with_every_step_once(
    tmp_path, monkeypatch
):
    """The killed run finds its store through MLFLOW_TRACKING_URI; the rerun, started where that store is
    the project's default (outputs/mlflow.db under the launch dir), continues the same run."""
    store = tmp_path / "outputs" / "mlflow.db"
    overrides = ["experiment=smoke", "model=bert", "pooling=mean", "trainer.epochs=3", "logger=mlflow"]
    overrides.append(f"hydra.sweep.dir={tmp_path / 'sweep'}")
    process = start(*overrides, env=app_env(MLFLOW_TRACKING_URI=f"sqlite:///{store}"))
    run_dir = tmp_path / "sweep" / "experiment=smoke,model=bert,pooling=mean,trainer.epochs=3"
    wait_for_log(run_dir / "train.log", "resumable state saved after epoch 1", process)
    process.kill()
    process.wait()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    train_in_process(*overrides)
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    runs = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    history = pd.read_csv(run_dir / "history.csv")
    assert len(history) == 3 and metrics(run_dir)["status"] == "completed"
    for key in ("valid/acc", "train/loss_step"):
        steps = [step for step, _ in steps_of(client, runs[0].info.run_id, key)]
        assert steps == sorted(set(steps)), key  # every step once
    assert [s for s, _ in steps_of(client, runs[0].info.run_id, "valid/acc")] == history["step"].tolist()
    assert "resuming after epoch 1" in (run_dir / "train.log").read_text()


@pytest.mark.slow
def test_a_tracker_that_is_down_costs_the_run_one_warning_line(tmp_path):
    """MLflow at a closed port, TensorBoard's dir on a full disk: the run completes, its run dir is whole."""
    run_dir = tmp_path / "run"
    (run_dir / "tensorboard").mkdir(parents=True)
    mounted = (
        os.geteuid() == 0
        and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(run_dir / "tensorboard")]).returncode
        == 0
    )
    trackers = "[mlflow,tensorboard]" if mounted else "[mlflow]"
    try:
        if mounted:
            (run_dir / "tensorboard" / "filler").write_bytes(b"\0" * (16 * 1024 - 512))
        overrides = [
            "experiment=smoke",
            "model=bert",
            "trainer.epochs=1",
            "logger=mlflow",
            f"logger.trackers={trackers}",
        ]
        overrides += [f"logger.tracking_uri=http://127.0.0.1:{free_port()}", f"hydra.run.dir={run_dir}"]
        said = train(*overrides, multirun=False)  # a process of its own: what a user's terminal shows
    finally:
        if mounted:
            subprocess.run(["umount", "--lazy", str(run_dir / "tensorboard")], check=True)
    warned = [line for line in (said.stdout + said.stderr).splitlines() if "WARNING" in line or "Traceback" in line]
    assert len(warned) == (2 if mounted else 1), warned
    assert "mlflow could not start tracking this run" in warned[0] and "the run goes on without it" in warned[0]
    if mounted:
        assert "tensorboard could not start tracking this run (OSError: [Errno 28] No space left" in warned[1]
    assert metrics(run_dir)["status"] == "completed"
    for name in ("history.csv", "predictions_test.parquet", "best/model.safetensors", "best/README.md"):
        assert (run_dir / name).is_file(), name


def test_a_tracker_whose_package_is_missing_is_one_line_saying_what_to_install(tmp_path, monkeypatch):
    """mlflow as Python sees a package that is not there (None in sys.modules: its import fails)."""
    from sweep.errors import InputError
    from sweep.job.runner import run

    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(InputError) as refused:
        run(
            compose_config("experiment=smoke", "logger=mlflow", "logger.trackers=[tensorboard,mlflow]"),
            tmp_path / "run",
        )
    assert str(refused.value) == 'logger.trackers has mlflow, which is not installed: pip install -e ".[mlflow]"'
    assert not (tmp_path / "run" / "tensorboard").exists()  # refused before any tracker started
