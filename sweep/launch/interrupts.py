"""SIGTERM (pre-emption, scancel, a killed sweep) as an exception, RunInterrupted, raised where the
job is; inside `deferred()` it waits until the block is done. An epoch's bookkeeping (its history
row, log line, resumable state and best/) is such a block: a SIGTERM landing in it would lose an
epoch that was trained and validated, and the rerun would train it again."""

import signal
from contextlib import contextmanager
from typing import Iterator, List


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM handled like Ctrl-C."""


_depth = 0  # deferred() blocks entered and not left
_received: List[int] = []  # signals that arrived inside them


def raise_interrupt(signum, frame) -> None:
    """The job's SIGTERM handler (sweep.job.runner.run installs it)."""
    if _depth:
        _received.append(signum)
        return
    raise RunInterrupted(f"received {signal.Signals(signum).name}")


@contextmanager
def deferred() -> Iterator[None]:
    """A block a SIGTERM does not cut: one that arrives inside raises RunInterrupted once it ends."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        received = [] if _depth else _received[:]
        if not _depth:
            _received.clear()  # an error leaving the block ends the job anyway: no interrupt for the next one
    if received:
        name = signal.Signals(received[-1]).name
        raise RunInterrupted(f"received {name} (once the epoch on disk was complete)")
