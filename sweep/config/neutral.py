"""The config keys that cannot change a run's numbers, for the whole project: the collector leaves
them out of the cell keys (runs that differ only in these are one setup) and the runner out of a
run's fingerprint (a rerun that differs only in these is the same run), except those that decide
what a run leaves on disk.
Kept free of heavy imports: the collector reads it without torch or Hydra."""

# a group name stands for every key under it (logger -> logger.name, logger.mode, ...)
RESULT_NEUTRAL_KEYS = (
    "logger",
    "trainer.resume",
    "trainer.num_workers",
    "trainer.threads",
    "trainer.gpu_wait_min",
    "trainer.log_every_n_steps",
    "trainer.save_best",
    "method.feature_cache",  # where cached features are kept, not what they hold
)


def is_result_neutral(key: str) -> bool:
    """key: a dotted config key (trainer.threads)."""
    return any(key == neutral or key.startswith(neutral + ".") for neutral in RESULT_NEUTRAL_KEYS)


# result-neutral, but a rerun that asks for what the first run did not leave (a checkpoint) must run again
ARTIFACT_KEYS = ("trainer.save_best",)
RERUN_NEUTRAL_KEYS = tuple(key for key in RESULT_NEUTRAL_KEYS if key not in ARTIFACT_KEYS)

# knobs added after runs were made, at the value that does what runs without them did: a run dir
# written before the knob existed is the same setup (the collector's cells) and the same run (a
# rerun skips it rather than training it again)
ADDED_KNOB_DEFAULTS = {
    "data.truncation": "head",
    "pooling.layers": 1,
    "optim.layer_decay": 1.0,
    "method.name": "finetune",
    "method.r": 8,
    "method.alpha": 16.0,
    "method.dropout": 0.1,
    "method.target_modules": None,
    "optim.class_weights": "none",
    "trainer.grad_accum_steps": 1,
    "trainer.max_grad_norm": None,
    "trainer.eval_every_steps": None,
    "trainer.max_steps": None,
    "trainer.select_metric": None,
    "trainer.threshold": 0.5,
    "data.task": "single_label",
    "data.label_separator": ",",
    "data.max_chunks": 8,
    "data.chunk_stride": 0,
    "data.preamble_words": 0,
    "pooling.windows": "mean",
    "trainer.gradient_checkpointing": False,
}
