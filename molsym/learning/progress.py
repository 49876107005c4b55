"""The progress display: one line per event on stdout (round, labels, what runs now)."""

from __future__ import annotations

import logging
import re
import sys
import time


class Progress:
    """``[learn 00:12] round 2 | 46/600 labels | oracle emt: labelling 10 structures``."""

    def __init__(self, max_labels: int, stream=None, enabled: bool = True):
        self.max_labels = max_labels
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.start = time.monotonic()
        self.round = 0
        self.labels = 0

    def update(self, round_: int | None = None, labels: int | None = None) -> None:
        """Remember the round and the label count shown in the next lines."""
        if round_ is not None:
            self.round = round_
        if labels is not None:
            self.labels = labels

    def say(self, what: str) -> None:
        """Print one line: elapsed time, round, labels, ``what``."""
        if not self.enabled:
            return
        seconds = int(time.monotonic() - self.start)
        clock = f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        print(f"[learn {clock}] round {self.round} | {self.labels}/{self.max_labels} labels | "
              f"{what}", file=self.stream, flush=True)


class OnceFilter(logging.Filter):
    """Lets each distinct warning through once (every round trains K members, each would
    repeat the same caveat about the data); messages that differ only in their numbers
    count as the same."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, re.sub(r"\d+", "#", record.getMessage()))
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def show_warnings_once() -> None:
    """Attach a :class:`OnceFilter` to the console handlers of the root logger."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler):
            handler.addFilter(OnceFilter())
