"""Table names of a deployed stack, read from its CloudFormation outputs with the operator's
own credentials (the commands that use them run on an operator's machine, not in Lambda)."""

from __future__ import annotations

import boto3

# Output key in template.yaml -> the variable name the settings models read.
OUTPUT_VARIABLES = {
    "AccountsTableName": "ACCOUNTS_TABLE",
    "LedgerTableName": "LEDGER_TABLE",
    "FeaturesTableName": "FEATURES_TABLE",
    "PipelinesTableName": "PIPELINES_TABLE",
}


class StackOutputsMissing(RuntimeError):
    """The stack does not export a name a command needs."""


def stack_variables(stack_name: str, needed: tuple[str, ...]) -> dict[str, str]:
    """{"ACCOUNTS_TABLE": "...", ...} for the `needed` variables, from the stack's outputs."""
    stack = boto3.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}
    found = {OUTPUT_VARIABLES[key]: value for key, value in outputs.items()
             if key in OUTPUT_VARIABLES}
    missing = sorted(set(needed) - set(found))
    if missing:
        raise StackOutputsMissing(f"stack {stack_name} has no outputs for {missing}")
    return {name: found[name] for name in needed}
