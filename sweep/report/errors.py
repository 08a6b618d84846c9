"""The report's one user-facing error."""


class CollectError(Exception):
    """A user-facing error: one line on stderr and the exit code (1; 2 for a bad argument)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code
