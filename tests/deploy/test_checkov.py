"""checkov over template.yaml and over what the SAM translator makes of it (the roles, aliases,
permissions and CodeDeploy resources exist only there). No finding may remain that
docs/operations.md does not list, with its reason, under "Accepted checkov findings"; and no
entry may stay listed once nothing finds it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

import pytest

from tests.deploy.tooling import REPO, TEMPLATE, can_drop_network, run
from tests.deploy.translated import translate

RUNBOOK: Final = REPO / "docs" / "operations.md"
ACCEPTED_ROW: Final = re.compile(r"^\|\s*`?(CKV2?_AWS_\d+)`?\s*\|", re.MULTILINE)
SECTION: Final = "## Accepted checkov findings"


def accepted_findings() -> set[str]:
    text = RUNBOOK.read_text(encoding="utf-8")
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return set(ACCEPTED_ROW.findall(section))


def scan(checkov: Path, target: Path, out_dir: Path) -> dict[str, Any]:
    """checkov's JSON report of one file, read from the file it writes (its console output
    mixes in warnings), with no network: it needs none for the built-in checks."""
    prefix = ["unshare", "--net", "--"] if can_drop_network() else []
    ran = run([*prefix, checkov, "--file", target, "--framework", "cloudformation",
               "--skip-download", "--compact", "--quiet", "--output", "json",
               "--output-file-path", out_dir])
    report_file = out_dir / "results_json.json"
    assert report_file.is_file(), ran.explain()
    report: dict[str, Any] = json.loads(report_file.read_text())
    return report


@pytest.fixture(scope="module")
def reports(checkov: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    work = tmp_path_factory.mktemp("checkov")
    translated = work / "translated.json"
    translated.write_text(json.dumps(translate(TEMPLATE), indent=1))
    found = {}
    for name, target in (("template", TEMPLATE), ("translated", translated)):
        (work / name).mkdir()
        found[name] = scan(checkov, target, work / name)
    return found


def _failed(report: dict[str, Any]) -> dict[str, list[str]]:
    failed: dict[str, list[str]] = {}
    for check in report["results"]["failed_checks"]:
        failed.setdefault(check["check_id"], []).append(check["resource"])
    return failed


@pytest.mark.parametrize("name", ["template", "translated"])
def test_checkov_reads_everything_and_finds_nothing_unaccepted(
    reports: dict[str, dict[str, Any]], name: str
) -> None:
    summary = reports[name]["summary"]
    assert summary["parsing_errors"] == 0 and summary["resource_count"] > 0, summary
    assert summary["passed"] > 0, summary
    unaccepted = {check: resources for check, resources in _failed(reports[name]).items()
                  if check not in accepted_findings()}
    assert not unaccepted, json.dumps(unaccepted, indent=1)


def test_every_accepted_finding_is_still_found(reports: dict[str, dict[str, Any]]) -> None:
    found = {check for report in reports.values() for check in _failed(report)}
    assert accepted_findings(), f"no accepted findings listed in {RUNBOOK}"
    assert accepted_findings() <= found, sorted(accepted_findings() - found)
