"""Cold start: each function's `import app` in a fresh interpreter against `import boto3,
aws_lambda_powertools` alone, side by side; before (the baseline commit, its core layer as it was
shipped then: sources only) and after (this tree, its core layer as `sam build` makes it with
layers/core/Makefile: sources and bytecode)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench import REPO
from bench.context import Context
from bench.report import Section, table
from bench.stats import median, rotated
from devstack.template import Function, load_template

REFERENCE = "import boto3, aws_lambda_powertools"
TARGET = 1.5
_PROBE = "import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"


@dataclass(frozen=True)
class Tree:
    """A checkout to import the functions from, with the core layer as Lambda would mount it."""

    label: str
    functions: dict[str, Function]
    core_layer: Path


def _extract(revision: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "template.yaml", "functions", "layers/core"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def _build_core_layer(root: Path, into: Path) -> Path:
    """layers/core/Makefile's target, as `sam build` runs it."""
    subprocess.run(
        ["make", "--no-print-directory", "-C", str(root / "layers" / "core"), "build-CoreLayer",
         f"ARTIFACTS_DIR={into}", f"PYTHON={sys.executable}"],
        check=True, capture_output=True,
    )
    return into / "python"


def _tree(label: str, root: Path, core_layer: Path) -> Tree:
    template = load_template(root / "template.yaml")
    return Tree(label, {f.logical_id: f for f in template.functions}, core_layer)


def _lambda_env(function: Function, core_layer: Path) -> dict[str, str]:
    """The function's own variables, as in its execution environment (where /opt is read-only,
    so nothing writes bytecode: every start is as cold as the first)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(function.environment)
    env.update({
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
        "LAMBDA_TASK_ROOT": str(function.handler_file.parent),
        "PYTHONPATH": os.pathsep.join([str(core_layer), str(function.handler_file.parent)]),
        "PYTHONDONTWRITEBYTECODE": "1",
        # The execution role's credentials, which Lambda puts in the environment (placeholders:
        # nothing here calls AWS, but signing a URL locally needs some).
        "AWS_ACCESS_KEY_ID": "ASIACOLDSTART", "AWS_SECRET_ACCESS_KEY": "coldstart",
        "AWS_SESSION_TOKEN": "coldstart",
    })
    return env


def _seconds(statement: str, env: Mapping[str, str], cwd: Path) -> float:
    """Time of ``statement`` in a fresh interpreter, from its own clock (startup excluded)."""
    ran = subprocess.run([sys.executable, "-c", _PROBE.format(statement=statement)], env=env,
                         cwd=cwd, capture_output=True, text=True, check=False)
    if ran.returncode != 0:
        raise RuntimeError(f"{statement!r} failed in {cwd}:\n{ran.stderr[-2000:]}")
    return float(ran.stdout.strip().splitlines()[-1])


def _import_app(tree: Tree, logical_id: str) -> float:
    function = tree.functions[logical_id]
    directory = function.handler_file.parent
    return _seconds("import app", _lambda_env(function, tree.core_layer), directory)


def _import_reference(tree: Tree) -> float:
    function = next(iter(tree.functions.values()))
    return _seconds(REFERENCE, _lambda_env(function, tree.core_layer), REPO)


@dataclass(frozen=True)
class ColdStarts:
    reference: list[float]
    before: dict[str, list[float]]
    after: dict[str, list[float]]

    def ratio(self, times: list[float]) -> float:
        return median(times) / median(self.reference)

    def worst(self, side: dict[str, list[float]]) -> tuple[str, float]:
        name = max(side, key=lambda n: median(side[n]))
        return name, self.ratio(side[name])


def measure(before: Tree, after: Tree, repeats: int) -> ColdStarts:
    """Every function of this tree; before, those the baseline already had."""
    jobs: list[tuple[str, str]] = [("reference", "")]
    for name in sorted(after.functions):
        if name in before.functions:
            jobs.append(("before", name))
        jobs.append(("after", name))
    trees = {"before": before, "after": after}
    measures: list[Callable[[], float]] = [
        partial(_import_reference, after) if side == "reference"
        else partial(_import_app, trees[side], name)
        for side, name in jobs
    ]
    results = rotated(measures, repeats)
    by_side: dict[str, dict[str, list[float]]] = {"reference": {}, "before": {}, "after": {}}
    for (side, name), times in zip(jobs, results, strict=True):
        by_side[side][name] = times
    return ColdStarts(by_side["reference"][""], by_side["before"], by_side["after"])


def _rows(cold: ColdStarts) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for name, times in cold.after.items():
        before = cold.before.get(name)
        before_ms = f"{median(before) * 1000:.0f}" if before else "—"
        before_ratio = f"{cold.ratio(before):.2f}" if before else "(new)"
        rows.append((name, before_ms, f"{median(times) * 1000:.0f}",
                     f"{before_ratio} → {cold.ratio(times):.2f}"))
    return rows


def run(ctx: Context) -> Section:
    with tempfile.TemporaryDirectory(prefix="coldstart-") as scratch:
        base = _extract(ctx.plan.baseline, Path(scratch) / "before")
        before = _tree(f"{ctx.plan.baseline}", base, base / "layers" / "core")
        after = _tree("this tree", REPO, _build_core_layer(REPO, Path(scratch) / "after"))
        cold = measure(before, after, ctx.plan.coldstart_repeats)
    worst_before, worst_after = cold.worst(cold.before), cold.worst(cold.after)
    headline = (
        f"slowest `import app` / `{REFERENCE}`: {worst_before[1]:.2f} → {worst_after[1]:.2f} "
        f"({worst_after[0]}; target ≤ {TARGET})"
    )
    body = "\n\n".join([
        table(["Function", "before ms", "after ms", f"import app / {REFERENCE}"], _rows(cold)),
        f"`{REFERENCE}` alone: {median(cold.reference) * 1000:.0f} ms (median). Each figure is "
        "the time of the import statement in a fresh interpreter, read from its own clock "
        "(interpreter startup left out), with the function's environment from the template, "
        "its code directory and the core layer on `PYTHONPATH`, placeholder credentials in "
        "the environment as Lambda gives the role's, and bytecode writing off as on "
        "Lambda's read-only /opt; third-party packages come from the project's venv (compiled "
        "at install, as layers/deps/Makefile compiles the layer). Before: commit "
        f"`{ctx.plan.baseline}`, its core layer as shipped then (sources only). After: this "
        "tree's core layer as `make -C layers/core build-CoreLayer` builds it for `sam build` "
        f"(bytecode included); a function the baseline did not have has no before. "
        f"Reference, before and after run in turn, "
        f"{ctx.plan.coldstart_repeats} times, forward then backward; medians.",
    ])
    return Section("coldstart", "Cold start", headline, body)
