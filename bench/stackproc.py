"""The local stack as a child process (``devstack.process.running_stack``), with what the
benchmarks need beside its API: its moto endpoint and the CPU time it has used."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench import REPO
from devstack.client import PixelBatchClient
from devstack.process import make_user, running_stack

LOG_DIR = REPO / ".cache" / "bench"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _proc_stat(pid: str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _child_running(module: str) -> int | None:
    """The pid of this process's child running ``python -m module`` (Linux /proc), or None."""
    if sys.platform != "linux":
        return None
    for entry in Path("/proc").iterdir():
        stat = _proc_stat(entry.name) if entry.name.isdigit() else None
        if stat is None or int(stat[1]) != os.getpid():  # field 4: the parent's pid
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"-m" in arguments and module.encode() in arguments:
            return int(entry.name)
    return None


@dataclass
class StackProcess:
    """A running local stack: the API at ``base_url``, its moto server at ``moto_url``."""

    base_url: str
    moto_url: str
    pid: int | None
    _exit: ExitStack
    _logs: Path

    @classmethod
    def start(cls) -> StackProcess:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        moto_port = _free_port()  # chosen here so that the bench can reach moto too
        logs = Path(tempfile.mkdtemp(prefix="devstack-", dir=LOG_DIR))
        exit_stack = ExitStack()
        stack = exit_stack.enter_context(running_stack(
            env={"MOTO_PORT": str(moto_port), "DEVSTACK_SCHEDULE_SCALE": "off"}, logs=logs,
        ))
        return cls(stack.base_url, f"http://127.0.0.1:{moto_port}", _child_running("devstack"),
                   exit_stack, logs)

    def new_client(self, quota: int = 100_000, plan: str = "pro") -> PixelBatchClient:
        """A fresh user with ``quota`` and ``plan``, and a client holding its token."""
        user_id = f"bench-{uuid.uuid4().hex[:12]}"
        return PixelBatchClient(self.base_url, make_user(self.base_url, user_id, quota=quota,
                                                         plan=plan))

    def cpu_seconds(self) -> float | None:
        """User and system CPU time of the stack process so far (Linux /proc), or None."""
        stat = _proc_stat(str(self.pid)) if self.pid is not None else None
        if stat is None:
            return None
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self._exit.close()
        shutil.rmtree(self._logs, ignore_errors=True)  # a failed start reports its log tail
