"""Run `python -m devstack` as a child process on free ports, for the demo and benchmarks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
READY = re.compile(r"^PixelBatch local API ready at (http://\S+)$", re.MULTILINE)


@contextmanager
def running_stack(timeout: float = 60) -> Iterator[str]:
    """Start the local stack, yield its base URL, stop it on exit. Its logs go to a temp file."""
    logs = Path(tempfile.mkdtemp(prefix="devstack-"))
    stdout, stderr = logs / "stdout.log", logs / "stderr.log"
    env = {**os.environ, "PORT": "0", "MOTO_PORT": "0", "PYTHONUNBUFFERED": "1"}
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "devstack"], cwd=REPO, env=env,
                                   stdout=out, stderr=err)
    try:
        yield _wait_ready(process, stdout, stderr, timeout)
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
