"""template.yaml as CloudFormation receives it after `sam deploy`: the SAM translator's output,
made offline. Local code locations become the S3 locations `sam package` would upload to, and
the state machine's DefinitionUri becomes its inline Definition (what scanners can read)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Final

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from devstack.iam import translator_region
from tests.deploy.tooling import REGION

_CODE_PROPERTIES: Final = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


class _BundledPoliciesOnly:
    """The translator's own copy of the AWS managed policy ARNs: no IAM call, no credentials."""

    def load(self) -> dict[str, str]:
        return {}


def packaged(template_path: Path) -> dict[str, Any]:
    """What `sam package` makes of the template, short of uploading anything."""
    document: dict[str, Any] = yaml_parse(template_path.read_text(encoding="utf-8"))
    document = copy.deepcopy(document)
    for logical_id, resource in document["Resources"].items():
        properties = resource.get("Properties") or {}
        code_property = _CODE_PROPERTIES.get(resource.get("Type", ""))
        if code_property and isinstance(properties.get(code_property), str):
            properties[code_property] = f"s3://pixelbatch-artifacts/{logical_id}.zip"
        if resource.get("Type") == "AWS::Serverless::StateMachine" and isinstance(
            properties.get("DefinitionUri"), str
        ):
            path = template_path.parent / properties.pop("DefinitionUri")
            properties["Definition"] = json.loads(path.read_text(encoding="utf-8"))
    return document


def translate(template_path: Path) -> dict[str, Any]:
    """The CloudFormation template the SAM transform produces (offline, fixed region)."""
    with translator_region(REGION):
        translated: dict[str, Any] = transform(packaged(template_path), {}, _BundledPoliciesOnly())
    return translated
