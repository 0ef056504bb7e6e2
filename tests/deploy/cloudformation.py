"""Reading deploy/ecs/template.yaml as CloudFormation does, for the tests.

Short-form tags (``!Ref X``, ``!GetAtt A.B``, ``!Sub ...``) become the long
form (``{"Ref": "X"}``, ``{"Fn::GetAtt": ["A", "B"]}``). YAML aliases are
refused, because CloudFormation refuses them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_FILE = ROOT / "deploy" / "ecs" / "template.yaml"

Template = dict[str, Any]
Resource = dict[str, Any]


class TemplateLoader(yaml.SafeLoader):
    """A safe loader that knows CloudFormation's short-form functions."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.MarkedYAMLError(
                "while reading a CloudFormation template",
                None,
                "found a YAML alias, which CloudFormation does not accept",
                mark,
            )
        return super().compose_node(parent, index)


def _function(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


TemplateLoader.add_multi_constructor("!", _function)


def load_template(path: Path = TEMPLATE_FILE) -> Template:
    """The template as plain data, functions in their long form."""
    with path.open() as stream:
        loaded: Template = yaml.load(stream, TemplateLoader)  # noqa: S506 (safe)
    return loaded


def resources_of_type(template: Template, kind: str) -> Iterator[tuple[str, Resource]]:
    """(logical id, resource) of every resource of ``kind``."""
    for name, resource in template["Resources"].items():
        if resource["Type"] == kind:
            yield name, resource


def ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def get_att(name: str, attribute: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [name, attribute]}


def names_resource(value: Any, logical_id: str) -> bool:
    """Whether ``value`` is a Ref, GetAtt or Sub of the resource ``logical_id``."""
    if value == ref(logical_id):
        return True
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return bool(value["Fn::GetAtt"][0] == logical_id)
    if isinstance(value, dict) and "Fn::Sub" in value:
        text = value["Fn::Sub"]
        return isinstance(text, str) and (
            f"${{{logical_id}}}" in text or f"${{{logical_id}." in text
        )
    return False


def container(template: Template, task_definition: str) -> dict[str, Any]:
    """The one container of a task definition."""
    properties = template["Resources"][task_definition]["Properties"]
    (definition,) = properties["ContainerDefinitions"]
    result: dict[str, Any] = definition
    return result


def environment(definition: dict[str, Any]) -> dict[str, Any]:
    return {item["Name"]: item["Value"] for item in definition.get("Environment", [])}


def injected_secrets(definition: dict[str, Any]) -> dict[str, Any]:
    return {item["Name"]: item["ValueFrom"] for item in definition.get("Secrets", [])}


def policy_statements(role: Resource) -> list[dict[str, Any]]:
    """Every statement of a role's inline policies."""
    return [
        statement
        for policy in role["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
