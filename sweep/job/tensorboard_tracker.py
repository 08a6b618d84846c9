"""TensorBoard: the run's scalars per step (train loss, every validation, the test figures) in
RUN_DIR/tensorboard/, and at the end the hparams record (the cell's config keys with the run's final
valid and test figures), so `tensorboard --logdir SWEEP_DIR` compares the cells of a sweep in its
HPARAMS tab. A job that resumes appends to the same log; the steps it logged before are not logged again."""

import threading
from pathlib import Path
from typing import Any, Dict

from sweep.report.configs import flatten
from sweep.rundir import OVERRIDES_FILE, TENSORBOARD_DIR, read_yaml

# the config keys every run's hparams record holds, beside those its overrides name (the cell's)
CORE_HPARAMS = ("model.name", "pooling.name", "method.name", "seed", "optim.lr", "data.max_len", "trainer.batch_size")


def logged_steps(directory: Path) -> Dict[str, int]:
    """The last step of each scalar in the event files already there (a run that resumes)."""
    if not directory.is_dir():
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: max(e.step for e in events.Scalars(tag)) for tag in events.Tags()["scalars"]}


def cell_hparams(run_dir: Path, config: Dict[str, Any]) -> Dict[str, Any]:
    """The keys that make the run's cell (its overrides) and the core ones, as TensorBoard takes them."""
    flat = flatten(config)
    overrides = read_yaml(run_dir / OVERRIDES_FILE) if (run_dir / OVERRIDES_FILE).is_file() else []
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides or []]
    chosen = {k: flat[k] for k in dict.fromkeys([*CORE_HPARAMS, *keys]) if k in flat}
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in chosen.items()}


def quiet_writer_threads() -> None:
    """TensorBoard's writer thread keeps the error that stopped it (a full disk) for the next write,
    which raises it to the tracker (one warning), and also prints it as a thread traceback: left out."""
    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

    previous = threading.excepthook
    if getattr(previous, "keeps_writer_errors", False):
        return

    def hook(args):
        if not isinstance(args.thread, _AsyncWriterThread):
            previous(args)

    hook.keeps_writer_errors = True
    threading.excepthook = hook


class TensorboardTracker:
    def __init__(self, run_dir: Path, config: Dict[str, Any]):
        from torch.utils.tensorboard import SummaryWriter

        quiet_writer_threads()
        directory = Path(run_dir) / TENSORBOARD_DIR
        self.logged = logged_steps(directory) if config.get("trainer", {}).get("resume", True) else {}
        self.hparams = cell_hparams(Path(run_dir), config)
        self.writer = SummaryWriter(log_dir=str(directory))
        self.last_step = max(self.logged.values(), default=0)

    def log(self, metrics: Dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and step > self.logged.get(key, -1):
                self.writer.add_scalar(key, value, step)
                self.logged[key] = step
        self.last_step = max(self.last_step, step)
        self.writer.flush()  # a kill loses nothing logged, and a full disk says so here, not at the end

    def summary(self, metrics: Dict[str, Any]) -> None:
        """The hparams record: the cell's keys against its final figures (final/valid/acc: the best
        checkpoint's, final/test/acc...), logged once as scalars that the HPARAMS tab reads."""
        from torch.utils.tensorboard.summary import hparams

        final = {
            f"final/{k}": float(v)
            for k, v in metrics.items()
            if k.startswith(("valid/", "test/")) and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if final:
            self.log(final, self.last_step)
            for record in hparams(self.hparams, {k: 0.0 for k in final}):  # the metrics' names; values: the scalars
                self.writer.file_writer.add_summary(record)
        self.writer.flush()

    def finish(self, exit_code: int = 0) -> None:
        self.writer.close()
