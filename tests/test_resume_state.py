"""The resumable state is data, never code: a state file planted in a run dir (outputs on a shared
cluster file system) must not run anything when a job resumes, and a state the job wrote itself
must round-trip through the safe loader exactly."""

import logging
import os
import random

import numpy as np
import torch
from transformers import get_scheduler

from sweep.fit.resume import ResumeState
from sweep.rundir import STATE_FILE


class RunsCode:
    """Unpickling this calls os.system: what a planted resume_state.pt could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_planted_state_file_that_would_run_code_is_refused_and_the_job_starts_over(tmp_path, caplog):
    marker, path = tmp_path / "code-ran", tmp_path / STATE_FILE
    torch.save({"epoch": 3, "training": {"payload": RunsCode(marker)}, "config_hash": "abc"}, path)
    with caplog.at_level(logging.WARNING, logger="sweep.fit.resume"):
        state = ResumeState.load(path, "abc")
    assert state is None  # the job starts over, as for a state of another config
    assert not marker.exists(), "unpickling the planted state ran code"
    refusals = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    assert len(refusals) == 1 and "unsafe or unreadable" in refusals[0], caplog.text


def test_an_unreadable_state_file_is_refused_in_one_line(tmp_path, caplog):
    path = tmp_path / STATE_FILE
    path.write_bytes(b"not a torch file")
    with caplog.at_level(logging.WARNING, logger="sweep.fit.resume"):
        assert ResumeState.load(path, "abc") is None
    assert sum(str(path) in r.getMessage() for r in caplog.records) == 1


def _training_objects():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=2, num_training_steps=10)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(5, 4)).sum().backward()
        optimizer.step()
        scheduler.step()
    return model, optimizer, scheduler


def test_a_state_the_job_wrote_loads_with_the_safe_loader_and_restores_every_stream(tmp_path):
    model, optimizer, scheduler = _training_objects()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = ResumeState(epoch=2, global_step=6, history=[{"epoch": 1, "valid/acc": 0.5}], best={"epoch": 1})
    state.capture(model, optimizer, scheduler, None, torch.device("cpu"))
    state.save(tmp_path / STATE_FILE, "abc")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())

    torch.load(tmp_path / STATE_FILE, weights_only=True)  # raises if anything in it needs unpickling code
    loaded = ResumeState.load(tmp_path / STATE_FILE, "abc")
    assert loaded is not None and loaded.epoch == 2 and loaded.history == state.history
    fresh_model, fresh_optimizer, fresh_scheduler = _training_objects()
    torch.nn.init.zeros_(fresh_model[0].weight)
    loaded.restore(fresh_model, fresh_optimizer, fresh_scheduler, None, torch.device("cpu"))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert torch.equal(fresh_model[0].weight, model[0].weight)
    assert fresh_scheduler.get_last_lr() == scheduler.get_last_lr()
    exp_avg = optimizer.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(fresh_optimizer.state_dict()["state"][0]["exp_avg"], exp_avg)
