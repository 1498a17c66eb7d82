"""The tools the deploy checks run: cfn-lint from the project's venv, and the SAM CLI and checkov
each from an environment of its own that is created on first use from requirements-sam.txt and
requirements-checkov.txt.

Every aws-sam-cli release pins boto3 and cfn-lint to exact versions that disagree with
requirements-dev.txt, so the SAM CLI cannot share the project's venv. Its environment lives in
.cache/deploy-check/ (ignored by git, removed by `make clean`), keyed by the requirements file and
the interpreter, so a version bump builds a new one. SAM_CLI=/path/to/sam uses another install.

The SAM CLI runs without AWS credentials or config files, with telemetry and its version check
off, in a fixed region; `sam validate` also runs without any network when the machine lets a
process drop it (`unshare --net`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[2]
TEMPLATE: Final = REPO / "template.yaml"
CACHE: Final = REPO / ".cache" / "deploy-check"
SAM_REQUIREMENTS: Final = Path(__file__).with_name("requirements-sam.txt")
CHECKOV_REQUIREMENTS: Final = Path(__file__).with_name("requirements-checkov.txt")
REGION: Final = "us-east-1"
INSTALL_TIMEOUT_SECONDS: Final = 480  # within pytest-timeout's 600 s for the first test
COMMAND_TIMEOUT_SECONDS: Final = 600
# Set by scripts/deploy_check.sh: there, a SAM CLI or checkov that cannot be installed is a
# failure, not a skip.
REQUIRE_SAM_VARIABLE: Final = "DEPLOY_CHECK_REQUIRE_SAM"
# Never hand the tools credentials or a profile: these checks must not need any.
CREDENTIAL_VARIABLES: Final = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)
# The template must hold outside us-east-1 too, where S3's global endpoint and a region's own
# resource types and limits differ: the region-dependent checks run in both.
REGIONS: Final = (REGION, "eu-west-1")


class SamUnavailable(RuntimeError):
    """The SAM CLI could not be installed (for instance, no package index)."""


class ToolUnavailable(SamUnavailable):
    """A deploy-check tool in an environment of its own could not be installed."""


@dataclass(frozen=True)
class Ran:
    command: tuple[str, ...]
    returncode: int
    output: str
    seconds: float

    def explain(self) -> str:
        return f"$ {' '.join(self.command)}\n(exit {self.returncode}, {self.seconds:.1f} s)\n" + (
            self.output[-6000:]
        )


def run(command: Sequence[str | Path], *, env: Mapping[str, str] | None = None,
        cwd: Path = REPO, timeout: float = COMMAND_TIMEOUT_SECONDS) -> Ran:
    """Run a command, stdout and stderr together, and time it."""
    args = tuple(str(part) for part in command)
    started = time.monotonic()
    completed = subprocess.run(
        args, cwd=cwd, env=dict(env) if env is not None else None, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False,
    )
    return Ran(args, completed.returncode, completed.stdout, time.monotonic() - started)


def venv_tool(name: str) -> Path:
    """A console script of the interpreter running the tests (the project's venv)."""
    return Path(sys.executable).parent / name


# ---------------------------------------------------------------------- the SAM CLI


def sam_home() -> Path:
    key = SAM_REQUIREMENTS.read_bytes() + sys.version.encode()
    return CACHE / f"sam-cli-{hashlib.sha256(key).hexdigest()[:12]}"


def install_sam() -> Path:
    """The `sam` executable, installing it into its own environment if it is not there yet."""
    override = os.environ.get("SAM_CLI", "").strip()
    if override:
        return Path(override)
    return _installed_tool(sam_home(), SAM_REQUIREMENTS, "sam")


def checkov_home() -> Path:
    key = CHECKOV_REQUIREMENTS.read_bytes() + sys.version.encode()
    return CACHE / f"checkov-{hashlib.sha256(key).hexdigest()[:12]}"


def install_checkov() -> Path:
    """The `checkov` executable (CHECKOV=/path/to/checkov uses another install). Its pinned
    dependencies disagree with the project's, so it too gets an environment of its own."""
    override = os.environ.get("CHECKOV", "").strip()
    if override:
        return Path(override)
    return _installed_tool(checkov_home(), CHECKOV_REQUIREMENTS, "checkov")


def _installed_tool(home: Path, requirements: Path, executable: str) -> Path:
    tool, stamp = home / "bin" / executable, home / ".installed"
    if stamp.is_file() and tool.is_file():
        return tool
    shutil.rmtree(home, ignore_errors=True)  # a half-made environment from an interrupted run
    home.parent.mkdir(parents=True, exist_ok=True)
    created = run([sys.executable, "-m", "venv", home], timeout=INSTALL_TIMEOUT_SECONDS)
    if created.returncode:
        raise ToolUnavailable(created.explain())
    installed = run(
        [home / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", requirements],
        timeout=INSTALL_TIMEOUT_SECONDS,
    )
    if installed.returncode or not tool.is_file():
        shutil.rmtree(home, ignore_errors=True)
        raise ToolUnavailable(installed.explain())
    stamp.write_text(f"installed in {created.seconds + installed.seconds:.0f} s\n")
    return tool


@cache
def can_drop_network() -> bool:
    try:
        return run(["unshare", "--net", "--", "true"], timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass(frozen=True)
class SamCli:
    executable: Path
    env: Mapping[str, str]

    @classmethod
    def prepare(cls, executable: Path, state_dir: Path) -> SamCli:
        """`state_dir` stands in for ~/.aws-sam and the AWS config files (none exist there)."""
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "metadata.json").write_text(
            json.dumps({"telemetryEnabled": False, "lastVersionCheck": time.time()})
        )
        env = {key: value for key, value in os.environ.items() if key not in CREDENTIAL_VARIABLES}
        env.update({
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": str(state_dir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(state_dir / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "SAM_CLI_TELEMETRY": "0",
            "__SAM_CLI_APP_DIR": str(state_dir),
            # `sam build` looks up python3.11 on PATH: the one beside sam has pip.
            "PATH": os.pathsep.join([str(executable.parent), env.get("PATH", "")]),
        })
        return cls(executable, env)

    def in_region(self, region: str) -> SamCli:
        """The same CLI, with `region` as the AWS region of what it runs."""
        return replace(self, env={**self.env, "AWS_DEFAULT_REGION": region, "AWS_REGION": region})

    def run(self, *args: str | Path, offline: bool = False, cwd: Path = REPO) -> Ran:
        prefix = ["unshare", "--net", "--"] if offline and can_drop_network() else []
        cwd.mkdir(parents=True, exist_ok=True)
        return run([*prefix, self.executable, *args], env=self.env, cwd=cwd)


# ---------------------------------------------------------------------- ELF headers

EM_AARCH64: Final = 183
EM_X86_64: Final = 62


def elf_machine(path: Path) -> int | None:
    """The e_machine field of an ELF file (None if it is not one)."""
    header = path.read_bytes()[:20]
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")
