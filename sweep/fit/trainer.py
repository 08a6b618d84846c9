"""What one assembled job trains with. A Trainer owns the model, its compiled forward, the optimizer,
the learning-rate schedule, the precision, the best checkpoint (sweep/fit/best_checkpoint.py) and the
resumable state; it resumes from the state the last validation saved, compiles every shape, and after
the loop (sweep/fit/loop.py) tests the best checkpoint and says what that pass cost. Prepared is what
the job assembled for it (sweep/job/assembly.py)."""

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch

from sweep.config.metrics import TASK_METRICS, task_metrics
from sweep.data.loaders import Collator, make_loader
from sweep.fit.best_checkpoint import BestCheckpoint
from sweep.fit.compilation import Compiled, compile_model, warmup_batches
from sweep.fit.evaluate import evaluate
from sweep.fit.frozen_features import FeatureHead, Features, as_batch
from sweep.fit.inference_cost import TimedLoader, inference_cost, peak_memory
from sweep.fit.optimizer import build_optimizer
from sweep.fit.resume import ResumeState
from sweep.fit.schedule import Schedule
from sweep.fit.step import Stepper
from sweep.model.classifier import Classifier
from sweep.model.device import resolve_precision
from sweep.model.tasks import make_task
from sweep.rundir import STATE_FILE

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A job's model (on its device), tokenizer, tokenized splits, the collator that batches them and
    the task (sweep/model/tasks.py) the head learns."""

    model: Classifier
    tokenizer: Any
    splits: Any
    collator: Collator
    task: Any = None
    lengths: Dict[str, float] = field(default_factory=dict)  # sweep/data/lengths.py: how much of the texts it reads

    @property
    def label_names(self) -> List[str]:
        return train_label_names(self.splits["train"])


def train_label_names(train) -> List[str]:
    """The class (or label) names of a labelled split; none for regression's numbers."""
    feature = train.features["label"]
    feature = getattr(feature, "feature", feature)  # multi_label: a sequence of class labels
    return list(feature.names) if hasattr(feature, "names") else []


def balanced_weights(labels: List[int], n_classes: int) -> List[float]:
    """optim.class_weights=balanced: n_rows / (n_classes x rows of the class) (sklearn's 'balanced');
    a class the train split lacks never is a target, so its weight is moot: 1 row is assumed."""
    counts = [0] * n_classes
    for label in labels:
        counts[label] += 1
    return [len(labels) / (n_classes * max(count, 1)) for count in counts]


def class_weights(kind: str, train) -> Optional[List[float]]:
    """optim.class_weights of the train split's labels (None: every class weighs the same)."""
    if kind != "balanced":
        return None
    weights = balanced_weights(train["label"][:], train.features["label"].num_classes)
    log.info("class weights (balanced, from the train split): %s", ", ".join(f"{w:.4f}" for w in weights))
    return weights


class Trainer:
    """job: the runner's Job (config, run dir, device, tracker, config fingerprint).
    features: method=frozen's cached vectors (sweep/fit/frozen_features.py), on which only the head trains."""

    def __init__(self, job, prepared: Prepared, features: Optional[Features] = None):
        self.cfg, self.run_dir, self.device, self.job = job.cfg, job.run_dir, job.device, job
        self.prepared, self.model, self.features = prepared, prepared.model, features
        self.task = prepared.task or make_task()
        self.trained = FeatureHead(self.model) if features is not None else self.model  # what the steps update
        self.precision = resolve_precision(self.cfg.trainer.precision, self.device)
        trainer = self.cfg.trainer
        self.schedule = Schedule.of(trainer, len(prepared.splits["train"]))
        self.optimizer, self.scheduler = build_optimizer(self.trained, self.cfg.optim, self.schedule.total_steps)
        self.class_weights = class_weights(self.cfg.optim.class_weights, prepared.splits["train"])
        weights = torch.tensor(self.class_weights, device=self.device) if self.class_weights else None
        self.stepper = Stepper(  # its model: the compiled forward, which compile() sets
            None, self.optimizer, self.scheduler, self.precision, self.device, trainer.max_grad_norm, weights, self.task
        )
        self.best = BestCheckpoint(self)
        self.state = ResumeState()
        self.compiled: Compiled = None  # set by compile()

    def description(self) -> Dict[str, Any]:
        """What the job trains, where and on how much data (for metrics.json, before training)."""
        splits, trainer = self.prepared.splits, self.cfg.trainer
        return {
            "params": self.model.num_parameters(),
            "trainable_params": self.model.trainable_parameters(),
            "device": str(self.device),
            "precision": self.precision.name,
            "train_samples": len(splits["train"]),
            "valid_samples": len(splits["valid"]),
            "test_samples": len(splits["test"]),
            "effective_batch_size": trainer.batch_size * trainer.grad_accum_steps,
            "task": self.task.name,
            "select_metric": self.best.metric,
            **({"class_weights": self.class_weights} if self.class_weights else {}),
            **(self.features.record() if self.features is not None else {}),
            **self.prepared.lengths,
        }

    def loader(self, split: str, batch_size: int, **options):
        if self.features is not None:
            rows = self.features.rows(split, self.cfg.pooling.name)
            return make_loader(
                rows, as_batch, batch_size, options.get("shuffle_seed"), skip_batches=options.get("skip_batches", 0)
            )
        return make_loader(
            self.prepared.splits[split],
            self.prepared.collator,
            batch_size,
            num_workers=self.cfg.trainer.num_workers,
            pin_memory=self.device.type == "cuda",
            **options,
        )

    # ------------------------------------------------------------ resume and compile

    def resume(self) -> None:
        """Goes on from the state the last validation saved, when this config wrote it."""
        saved = ResumeState.load(self.run_dir / STATE_FILE, self.job.fingerprint) if self.cfg.trainer.resume else None
        if saved is None or not saved.global_step:
            return
        self.state = saved
        saved.restore(self.trained, self.optimizer, self.scheduler, self.precision.scaler, self.device)
        best, metric = saved.best, self.best.metric
        log.info(
            "resuming after epoch %s, step %d (best %s %.4f at epoch %s)",
            saved.history[-1]["epoch"],
            saved.global_step,
            metric,
            best[metric],
            best["epoch"],
        )
        self.best.reconcile()

    def compile(self) -> Dict[str, Any]:
        """Compiles every shape outside the timed steps, after the restore (which it must not
        disturb); returns the compile record for metrics.json."""
        cfg = self.cfg
        if self.features is not None:  # a linear layer over vectors: nothing for a compiler to win
            self.compiled = Compiled(self.trained, None, False)
        else:
            self.compiled = compile_model(
                self.model,
                "false" if cfg.data.truncation == "chunks" else cfg.trainer.compile,  # a shape per window count
                self.device,
                self.precision,
                warmup_batches(self.prepared, cfg.trainer.batch_size, cfg.data.eval_batch_size),
                padding=cfg.data.padding,
                backend=cfg.trainer.compile_backend,
            )
        self.stepper.model = self.compiled.forward
        return self.compiled.record()

    # ------------------------------------------------------------ the test pass

    def release_training_state(self) -> None:
        """What training holds on the device (optimizer moments) is no cost of inference: free it."""
        self.state.training = {}
        self.optimizer = self.scheduler = self.stepper = None

    def test_best(self) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """The test split on the best checkpoint, and what that pass cost: throughput and peak memory
        (on cached features: what encoding the test split cost, the frozen model's inference)."""
        self.best.load()
        self.model.merge_adapter()  # LoRA: tested as saved, the plain model with the adapters folded in
        if self.features is not None:
            loader = self.loader("test", self.cfg.data.eval_batch_size)
            test = evaluate(self.trained, loader, self.device, task=self.task)
            meta = self.features.meta
            return test, {k: meta[k] for k in ("test_samples_per_s", "peak_memory_mib", "peak_memory_kind")}
        timed = TimedLoader(self.loader("test", self.cfg.data.eval_batch_size), self.device)
        with peak_memory(self.device) as memory:
            test = evaluate(
                self.compiled.forward, timed, self.device, "test (best checkpoint)", self.precision, self.task
            )
            timed.stop()
        return test, inference_cost(timed, memory)

    def training_results(self) -> Dict[str, Any]:
        """metrics.json's fields of the training: the best validation's figures and what training cost."""
        best, history = self.state.best, self.state.history
        train_seconds = sum(r["seconds"] for r in history)
        if self.features is not None:  # a probe's training includes the encoding it did (or the reading)
            train_seconds += self.features.seconds
        return {
            "best_epoch": best["epoch"],
            "best_step": best["step"],
            "epochs_run": history[-1]["epoch"],
            "optimizer_steps": self.state.global_step,
            **{k: best[k] for k in ("train/acc", "train/loss", *task_metrics(self.task.name, "valid")) if k in best},
            "train_seconds": train_seconds,
            "train_samples_per_s": sum(r["samples"] for r in history) / train_seconds if train_seconds else None,
            "error": None,
        }

    def results(self, test: Dict[str, Any], inference: Dict[str, Any]) -> Dict[str, Any]:
        """The final metrics.json fields of a completed run."""
        tested = {f"test/{name}": test[name] for name in TASK_METRICS[self.task.name]["test"]}
        return {**self.training_results(), **tested, **inference}
