"""``python -m bench``: run the benchmarks, print each ratio, rewrite docs/performance.md."""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pixelbatch.imaging.heap import keep_freed_memory

from bench import REPO
from bench.context import Context
from bench.plan import FULL, QUICK, SECTIONS
from bench.report import Section, document

DOC = REPO / "docs" / "performance.md"
MODULES = {"floor": "floor", "engine": "engine", "memory": "memory", "coldstart": "coldstart",
           "overhead": "overhead", "zip": "zipbench", "latency": "latency",
           "responsive": "responsive", "cost": "cost"}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small smoke run (< 1 minute)")
    parser.add_argument("--only", choices=SECTIONS, action="append",
                        help="run only this benchmark (repeatable)")
    parser.add_argument("--images", type=int, help="photos per batch (default 50, quick 3)")
    parser.add_argument("--output", type=Path,
                        help="write the report here (default: docs/performance.md on a full "
                        "run of every benchmark, nowhere otherwise)")
    args = parser.parse_args(argv)
    if args.images is not None and not 1 <= args.images <= 50:
        parser.error("--images must be within 1..50 (a batch holds at most 50 images)")
    return args


def _runner(name: str) -> Callable[[Context], Section]:
    module = importlib.import_module(f"bench.{MODULES[name]}")
    runner: Callable[[Context], Section] = module.run
    return runner


def _target(args: argparse.Namespace) -> Path | None:
    if args.output is not None:
        return Path(args.output)
    full = not args.quick and not args.only and args.images in (None, FULL.images)
    return DOC if full else None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    plan = (QUICK if args.quick else FULL).with_images(args.images)
    names = [name for name in SECTIONS if not args.only or name in args.only]
    keep_freed_memory()  # pipelines run in this process as in the item worker, heap and all
    ctx = Context(plan)
    started = time.perf_counter()
    sections: list[Section] = []
    try:
        for name in names:
            print(f"== {name} ...", flush=True)
            section_started = time.perf_counter()
            section = _runner(name)(ctx)
            sections.append(section)
            print(section.markdown(), flush=True)
            print(f"== {name} took {time.perf_counter() - section_started:.0f} s", flush=True)
    finally:
        ctx.stop_stack()
    elapsed = time.perf_counter() - started
    print(f"== done in {elapsed:.0f} s")
    target = _target(args)
    if target is not None:
        command = shlex.join([".venv/bin/python", "-m", "bench", *(argv or sys.argv[1:])])
        target.write_text(document(command, sections, elapsed))
        print(f"wrote {target}")
    return 0
