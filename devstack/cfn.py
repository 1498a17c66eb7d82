"""CloudFormation YAML loading and intrinsic-function resolution.

The loader turns short tags (``!Ref X``) into their long form (``{"Ref": "X"}``) so that the
resolver only ever deals with one shape. The resolver evaluates intrinsics against a
:class:`Context` that knows parameter values, conditions and the physical names chosen locally.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "NO_VALUE",
    "Context",
    "TemplateError",
    "load_yaml",
    "resolve",
]


class TemplateError(ValueError):
    """The template uses something the local resolver cannot evaluate."""


class _NoValue:
    """``AWS::NoValue``: the enclosing key or list item disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()

# Short tag -> long form. GetAtt is special-cased because its scalar form is "Res.Attr".
_FN_TAGS = (
    "And",
    "Base64",
    "Cidr",
    "Equals",
    "FindInMap",
    "GetAZs",
    "If",
    "ImportValue",
    "Join",
    "Not",
    "Or",
    "Select",
    "Split",
    "Sub",
    "Transform",
)


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation short tags."""


def _construct_node(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    raise TemplateError(f"unsupported YAML node {node!r}")


def _long_form(key: str) -> Callable[[yaml.SafeLoader, yaml.Node], Any]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        return {key: _construct_node(loader, node)}

    return construct


def _construct_getatt(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    value = _construct_node(loader, node)
    if isinstance(value, str):
        resource, _, attribute = value.partition(".")
        value = [resource, attribute]
    return {"Fn::GetAtt": value}


_CfnLoader.add_constructor("!Ref", _long_form("Ref"))
_CfnLoader.add_constructor("!Condition", _long_form("Condition"))
_CfnLoader.add_constructor("!GetAtt", _construct_getatt)
for _name in _FN_TAGS:
    _CfnLoader.add_constructor(f"!{_name}", _long_form(f"Fn::{_name}"))


def load_yaml(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML file into plain long-form data."""
    with path.open(encoding="utf-8") as stream:
        try:
            data = yaml.load(stream, Loader=_CfnLoader)
        except yaml.YAMLError as exc:
            # e.g. an unquoted "/x/{id}" inside a flow mapping; SAM and cfn-lint reject it too
            raise TemplateError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise TemplateError(f"{path} is not a template (top level is not a mapping)")
    return data


@dataclass
class Context:
    """What intrinsics resolve against."""

    parameters: Mapping[str, Any]
    pseudo: Mapping[str, Any]
    refs: Mapping[str, str]
    attributes: Callable[[str, str], str]
    condition_defs: Mapping[str, Any] = field(default_factory=dict)
    mappings: Mapping[str, Any] = field(default_factory=dict)
    _conditions: dict[str, bool] = field(default_factory=dict, init=False)

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        for source in (self.pseudo, self.parameters, self.refs):
            if name in source:
                return source[name]
        raise TemplateError(f"Ref to unknown name {name!r}")

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            if name not in self.condition_defs:
                raise TemplateError(f"unknown condition {name!r}")
            value = resolve(self.condition_defs[name], self)
            if not isinstance(value, bool):
                raise TemplateError(f"condition {name!r} is not a boolean: {value!r}")
            self._conditions[name] = value
        return self._conditions[name]


def resolve(value: Any, ctx: Context) -> Any:
    """Evaluate every intrinsic inside ``value``; ``AWS::NoValue`` entries are dropped."""
    if isinstance(value, list):
        items = [resolve(item, ctx) for item in value]
        return [item for item in items if item is not NO_VALUE]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (key, arg), = value.items()
        function = _FUNCTIONS.get(key)
        if function is not None:
            return function(arg, ctx)
    resolved = {key: resolve(item, ctx) for key, item in value.items()}
    return {key: item for key, item in resolved.items() if item is not NO_VALUE}


def _as_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise TemplateError(f"expected a scalar, got {value!r}")


def _fn_ref(arg: Any, ctx: Context) -> Any:
    return ctx.ref(resolve(arg, ctx))


def _fn_getatt(arg: Any, ctx: Context) -> str:
    resource, attribute = resolve(arg, ctx)
    return ctx.attributes(resource, attribute)


_SUB_VAR = re.compile(r"\$\{([^}]*)\}")


def _fn_sub(arg: Any, ctx: Context) -> str:
    if isinstance(arg, list):
        text, variables = arg[0], resolve(arg[1], ctx)
    else:
        text, variables = arg, {}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        if name.startswith("!"):  # ${!Literal} escapes a placeholder
            return "${" + name[1:] + "}"
        if name in variables:
            return _as_str(variables[name])
        if "." in name and not name.startswith("AWS::"):
            resource, _, attribute = name.partition(".")
            return ctx.attributes(resource, attribute)
        return _as_str(ctx.ref(name))

    return _SUB_VAR.sub(replace, resolve(text, ctx))


def _fn_join(arg: Any, ctx: Context) -> str:
    delimiter, items = resolve(arg, ctx)
    return str(delimiter).join(_as_str(item) for item in items)


def _fn_select(arg: Any, ctx: Context) -> Any:
    index, items = resolve(arg, ctx)
    return items[int(index)]


def _fn_split(arg: Any, ctx: Context) -> list[str]:
    delimiter, text = resolve(arg, ctx)
    return str(text).split(delimiter)


def _fn_if(arg: Any, ctx: Context) -> Any:
    name, when_true, when_false = arg
    return resolve(when_true if ctx.condition(name) else when_false, ctx)


def _fn_equals(arg: Any, ctx: Context) -> bool:
    left, right = resolve(arg, ctx)
    if isinstance(left, list | dict) or isinstance(right, list | dict):
        return bool(left == right)
    return _as_str(left) == _as_str(right)


def _fn_not(arg: Any, ctx: Context) -> bool:
    (value,) = resolve(arg, ctx)
    return not value


def _fn_and(arg: Any, ctx: Context) -> bool:
    return all(resolve(arg, ctx))


def _fn_or(arg: Any, ctx: Context) -> bool:
    return any(resolve(arg, ctx))


def _fn_condition(arg: Any, ctx: Context) -> bool:
    return ctx.condition(arg)


def _fn_find_in_map(arg: Any, ctx: Context) -> Any:
    name, top, second = resolve(arg, ctx)
    try:
        return ctx.mappings[name][top][second]
    except KeyError as exc:
        raise TemplateError(f"Fn::FindInMap {name}/{top}/{second} not found") from exc


def _fn_get_azs(arg: Any, ctx: Context) -> list[str]:
    region = resolve(arg, ctx) or ctx.pseudo["AWS::Region"]
    return [f"{region}{zone}" for zone in "abc"]


def _fn_base64(arg: Any, ctx: Context) -> str:
    return base64.b64encode(_as_str(resolve(arg, ctx)).encode()).decode()


def _fn_unsupported(name: str) -> Callable[[Any, Context], Any]:
    def fail(arg: Any, ctx: Context) -> Any:
        raise TemplateError(f"{name} is not supported locally")

    return fail


_FUNCTIONS: dict[str, Callable[[Any, Context], Any]] = {
    "Ref": _fn_ref,
    "Condition": _fn_condition,
    "Fn::GetAtt": _fn_getatt,
    "Fn::Sub": _fn_sub,
    "Fn::Join": _fn_join,
    "Fn::Select": _fn_select,
    "Fn::Split": _fn_split,
    "Fn::If": _fn_if,
    "Fn::Equals": _fn_equals,
    "Fn::Not": _fn_not,
    "Fn::And": _fn_and,
    "Fn::Or": _fn_or,
    "Fn::FindInMap": _fn_find_in_map,
    "Fn::GetAZs": _fn_get_azs,
    "Fn::ImportValue": _fn_unsupported("Fn::ImportValue"),
    "Fn::Base64": _fn_base64,
    "Fn::Cidr": _fn_unsupported("Fn::Cidr"),
    "Fn::Transform": _fn_unsupported("Fn::Transform"),
}
