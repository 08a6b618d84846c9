"""The errors a user can fix: reported on the terminal in one line, without a traceback (which goes
to the job's train.log for whoever debugs)."""

import argparse


def reason(error: BaseException) -> str:
    """An exception as `Type: its first line`, for one-line messages (safetensors, transformers, json,
    onnxruntime, MLflow each raise their own)."""
    said = str(error).strip()
    return f"{type(error).__name__}: {said.splitlines()[0][:300]}" if said else type(error).__name__


class InputError(ValueError):
    """Bad input (a config value, a path, a model or dataset that cannot be reached), said in one
    sentence that names the bad value and what would be accepted."""


class ConfigError(InputError):
    """Config values their rules refuse (sweep/config/schema.py), every one named, before anything loads."""


class WriteError(InputError):
    """A file of the run dir could not be written (a full disk, no permission); the files written
    before it are intact, since every write replaces its file in one rename."""


class ExportError(InputError):
    """A run dir, an option or an environment the ONNX export cannot use: said in one line."""


class ModelLoadError(InputError):
    """A model that cannot be found or opened."""


class GpuUnavailableError(InputError):
    """Every GPU stayed locked by other jobs for as long as the job was allowed to wait."""


class CompileError(InputError):
    """torch.compile failed with trainer.compile=true: said in one line, before any training."""


class DataError(InputError):
    """Data that cannot be loaded or does not fit."""


class CheckpointError(InputError):
    """A saved classifier (best/, classifier.json, an ONNX export) that does not load: a damaged or missing file."""


class OnnxUnavailable(InputError):
    """An export that is not there, or ONNX Runtime not installed: said in one line."""


class PredictError(InputError):
    """Input predict.py cannot use: said in one line."""


class CollectError(Exception):
    """A user-facing error: one line on stderr and the exit code (1; 2 for a bad argument)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class OneLineParser(argparse.ArgumentParser):
    """argparse, whose own errors (an unknown option, a value of the wrong type) are one line as well,
    like every other error of the commands, not its usage block first."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
