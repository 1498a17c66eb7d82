"""Run `python -m devstack` as a child process on free ports, for the demo and benchmarks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
READY = re.compile(r"^PixelBatch local API ready at (http://\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class StackProcess:
    base_url: str
    stderr_path: Path

    def stderr_tail(self, lines: int = 60) -> str:
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@contextmanager
def running_stack(
    *, env: Mapping[str, str] | None = None, logs: Path | None = None, timeout: float = 60
) -> Iterator[StackProcess]:
    """Start the local stack on free ports, yield it, stop it on exit. Its output goes to files
    (never a pipe, which a chatty stack could fill and block on)."""
    logs = logs or Path(tempfile.mkdtemp(prefix="devstack-"))
    stdout, stderr = logs / "stdout.log", logs / "stderr.log"
    environment = {**os.environ, "PORT": "0", "MOTO_PORT": "0", "PYTHONUNBUFFERED": "1",
                   **(env or {})}
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "devstack"], cwd=REPO,
                                   env=environment, stdout=out, stderr=err)
    try:
        yield StackProcess(_wait_ready(process, stdout, stderr, timeout), stderr)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def make_user(base_url: str, user_id: str, *, quota: int, plan: str) -> str:
    """A dev user with this quota and plan (created or reset); returns its token."""
    response = requests.post(f"{base_url}/local/users", timeout=30,
                             json={"user_id": user_id, "quota": quota, "plan": plan})
    response.raise_for_status()
    return str(response.json()["token"])


def _wait_ready(process: subprocess.Popen[bytes], stdout: Path, stderr: Path,
                timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        found = READY.search(stdout.read_text(errors="replace"))
        if found:
            return found.group(1)
        time.sleep(0.05)
    tail = "\n".join(stderr.read_text(errors="replace").splitlines()[-30:])
    raise RuntimeError(f"the local stack did not start; its log ends with:\n{tail}")
