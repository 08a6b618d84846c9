"""The errors a user can fix: reported on the terminal in one line, without a traceback (which goes
to the job's train.log for whoever debugs)."""


class InputError(ValueError):
    """Bad input (a config value, a path, a model or dataset that cannot be reached), said in one
    sentence that names the bad value and what would be accepted."""


class ConfigError(InputError):
    """Config values their rules refuse (sweep/schema.py), every one named, before anything loads."""


class WriteError(InputError):
    """A file of the run dir could not be written (a full disk, no permission); the files written
    before it are intact, since every write replaces its file in one rename."""


class ExportError(InputError):
    """A run dir, an option or an environment the ONNX export cannot use: said in one line."""
