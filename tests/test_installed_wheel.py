"""The tool as a user installs it: a wheel built from the repository, installed without -e into a venv
of its own (which sees this environment's packages but not the checkout), run by its console scripts
from an empty directory outside the repository: the smoke grid, the comparison table, a prediction,
and a user's own config beside the packaged ones."""

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers.app import REPO, app_env

TREE = ("pyproject.toml", "README.md", "sweep", "conf", "hydra_plugins")  # what the wheel is built from


def run(command, cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{command} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the venv's bin dir, its environment, the wheel's file names): the wheel built from a copy of
    the repository's files (the build writes beside them), installed with --no-deps."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in TREE:
        if (REPO / name).is_dir():  # sweep/conf stays a link to conf/, as in the repository
            shutil.copytree(REPO / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root), "."]
    run(build, source, app_env())
    wheel = next(root.glob("encoder_sweep-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (lib,) = (venv / "lib").glob("python*/site-packages")
    # this environment's packages (torch, transformers, hydra...), but not its editable hook to the checkout
    (lib / "test-environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    python = venv / "bin" / "python"
    run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        root,
        app_env(),
    )
    env = app_env(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)
    return venv / "bin", env, zipfile.ZipFile(wheel).namelist()


@pytest.mark.slow
def test_the_wheel_carries_every_package_the_configs_and_the_plugins(installed):
    _, _, files = installed
    packages = {str(p.parent.relative_to(REPO)) for p in (REPO / "sweep").rglob("__init__.py")}
    shipped = {name.rsplit("/", 1)[0] for name in files if name.endswith("/__init__.py")}
    assert packages <= shipped, packages - shipped
    configs = {str(p.relative_to(REPO)) for p in (REPO / "conf").rglob("*.yaml")}
    assert {f"sweep/{c}" for c in configs} <= set(files), "the wheel lacks configs"
    assert "hydra_plugins/encoder_sweep/__init__.py" in files


@pytest.mark.slow
def test_the_installed_console_scripts_run_the_smoke_grid_collect_and_predict_outside_the_checkout(installed, tmp_path):
    bin_dir, env, _ = installed
    where = run([str(bin_dir / "python"), "-c", "import sweep; print(sweep.__file__)"], tmp_path, env).stdout
    assert str(bin_dir.parent) in where and str(REPO) not in where, where  # the installed copy, not the checkout

    work = tmp_path / "anywhere"
    work.mkdir()
    # the README's smoke grid, one epoch a job (what is checked here is the installed tool, not the learning)
    grid = [
        "-m",
        "model=bert,modernbert",
        "pooling=cls,mean",
        "experiment=smoke",
        "trainer.epochs=1",
        "hydra.sweep.dir=sweep",
    ]
    run([str(bin_dir / "encoder-sweep-train"), *grid], work, env)
    runs = sorted(p.parent for p in (work / "sweep").glob("*/metrics.json"))
    cells = {
        (m["model"], m["pooling"], m["status"]) for m in (json.loads((r / "metrics.json").read_text()) for r in runs)
    }
    assert cells == {(model, pooling, "completed") for model in ("bert", "modernbert") for pooling in ("cls", "mean")}

    collected = run([str(bin_dir / "encoder-sweep-collect"), "sweep", "--out", "table"], work, env)
    assert "comparison" in collected.stdout
    table = (work / "table" / "comparison.csv").read_text().splitlines()
    assert len(table) == 1 + 4, table  # a header and one row per run

    predicted = run(
        [str(bin_dir / "encoder-sweep-predict"), str(runs[0]), "a wonderful film", "a dull film"], work, env
    )
    lines = predicted.stdout.splitlines()
    assert lines[0].startswith("label,class_id") and len(lines) == 3, predicted.stdout

    # a user's own configs beside the packaged ones: Hydra's --config-dir (a model of their own on the packaged bert)
    mine = work / "my_conf" / "model"
    mine.mkdir(parents=True)
    (mine / "mybert.yaml").write_text("defaults:\n  - bert\n  - _self_\nname: mybert\n")
    shown = run(
        [
            str(bin_dir / "encoder-sweep-train"),
            "--config-dir",
            "my_conf",
            "model=mybert",
            "experiment=smoke",
            "--cfg",
            "job",
        ],
        work,
        env,
    )
    assert "name: mybert" in shown.stdout and "tiny: true" in shown.stdout, shown.stdout[-2000:]
