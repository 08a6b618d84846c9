"""A job's run-dir name: its overrides as one readable, stable path component (the run_dirname
resolver of hydra.sweep.subdir), and the name Hydra gives a job with given overrides (the tune
sweeper's trial dirs, the callbacks' list of a sweep's jobs). Apart from sweep/launch/config_store.py, so that
the sweeper and the callbacks use it without importing the config registration (which imports them)."""

import hashlib

MAX_DIRNAME_BYTES = 200  # file systems take 255 bytes per path component; room left for the hash


def run_dirname(override_dirname: str) -> str:
    """A job's overrides as one path component: readable, stable, unique per combination. A name
    too long for a file system (a model.id that is a deep local path) is cut and ends in a hash of
    the whole, so it stays unique."""
    name = override_dirname.replace("/", "_").replace("\\", "_") or "default"
    encoded = name.encode()
    if len(encoded) <= MAX_DIRNAME_BYTES:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:16]
    return encoded[: MAX_DIRNAME_BYTES - len(digest) - 1].decode(errors="ignore") + "-" + digest


def job_dirname(overrides, naming) -> str:
    """The run-dir name Hydra gives a job with these overrides (`key=value` strings) under this
    hydra.job.config.override_dirname naming (its exclude_keys and separators), as run_dirname cuts it."""
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return run_dirname(
        get_overrides_dirname(
            parsed, exclude_keys=list(naming.exclude_keys), item_sep=naming.item_sep, kv_sep=naming.kv_sep
        )
    )
