"""Progress lines for long work, at most one every ``every`` seconds: a stage that runs for hours on a real
model shows that it is moving, and one that takes a second on a toy model writes nothing (under Dagster every
line is an event the instance stores, which costs more than a toy stage's batches)."""

import time
from collections.abc import Callable


class Progress:
    def __init__(self, log: Callable[[str], None] | None, every: float = 10.0):
        self.log, self.every = log, every
        self.last = time.monotonic()

    def __call__(self, message: str) -> None:
        now = time.monotonic()
        if self.log is not None and now - self.last >= self.every:
            self.log(message)
            self.last = now
