"""Progress on stderr: one redrawn line on a terminal, a line per change otherwise."""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

BAR_WIDTH = 30


def bar(done: int, failed: int, total: int) -> str:
    """`[####xx......]`: # succeeded, x failed, . not finished."""
    if total <= 0:
        return "[" + "." * BAR_WIDTH + "]"
    ok_cells = round(BAR_WIDTH * done / total)
    bad_cells = min(BAR_WIDTH - ok_cells, round(BAR_WIDTH * failed / total))
    rest = BAR_WIDTH - ok_cells - bad_cells
    return "[" + "#" * ok_cells + "x" * bad_cells + "." * rest + "]"


def task_line(task: dict[str, Any]) -> str:
    total = int(task["batch_total"])
    done, failed = int(task["batch_success"]), int(task["batch_failed"])
    cancelled = int(task.get("batch_cancelled") or 0)
    finished = done + failed + cancelled
    parts = [f"{bar(done, failed, total)} {finished}/{total}", f"{done} done", f"{failed} failed"]
    if cancelled:
        parts.append(f"{cancelled} cancelled")
    return f"batch {task['id'][:8]} {task['status']:<15} " + ", ".join(parts)


class Progress:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.last = ""
        self._lock = threading.Lock()  # uploads report from several threads

    def show(self, line: str) -> None:
        with self._lock:
            if line == self.last:
                return
            self.last = line
            self.stream.write(("\r\x1b[2K" + line) if self.live else line + "\n")
            self.stream.flush()

    def end(self) -> None:
        if self.live and self.last:
            self.stream.write("\n")
            self.stream.flush()
        self.last = ""

    def say(self, line: str) -> None:
        self.end()
        self.stream.write(line + "\n")
        self.stream.flush()
