"""The error a user can fix by changing an override: reported in one line, without a traceback."""


class InputError(ValueError):
    """Bad input (a config value, a path, a model or dataset that cannot be reached), said in one
    sentence that names the bad value and what would be accepted."""
