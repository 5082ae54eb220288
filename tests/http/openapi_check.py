"""Checks HTTP answers against the sidecar's OpenAPI document.

A small JSON Schema validator for the keywords the document uses ($ref,
type, properties, required, additionalProperties, items, enum, const,
minimum, maximum, minLength, minItems, maxItems), and a matcher from a
request (method, path) to its documented operation. Every answer the tests'
HTTP client receives goes through ``check_response``, so every test is also
a conformance test, in the way schemathesis checks an API.
"""

from __future__ import annotations

import json
import re
from typing import Any

from nomadkv.http.openapi import DOCUMENT

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


class SchemaMismatch(AssertionError):
    pass


def resolve(ref: str, document: dict[str, Any] = DOCUMENT) -> Any:
    if not ref.startswith("#/"):
        raise SchemaMismatch(f"only local references are supported: {ref}")
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _is_type(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _JSON_TYPES[name])


def validate(value: Any, schema: dict[str, Any], where: str = "$") -> None:
    """Raise SchemaMismatch naming the first place ``value`` breaks ``schema``."""
    if "$ref" in schema:
        validate(value, resolve(schema["$ref"]), where)
        return
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, name) for name in names):
            raise SchemaMismatch(f"{where}: {value!r} is not of type {names}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaMismatch(f"{where}: {value!r} is not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        raise SchemaMismatch(f"{where}: {value!r} is not {schema['const']!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise SchemaMismatch(f"{where}: {value} < minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise SchemaMismatch(f"{where}: {value} > maximum {schema['maximum']}")
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        raise SchemaMismatch(f"{where}: {value!r} is shorter than {schema['minLength']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise SchemaMismatch(f"{where}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise SchemaMismatch(f"{where}: more than {schema['maxItems']} items")
        for i, item in enumerate(value):
            validate(item, schema.get("items", {}), f"{where}[{i}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                raise SchemaMismatch(f"{where}: missing required property {name!r}")
        for name, item in value.items():
            if name in properties:
                validate(item, properties[name], f"{where}.{name}")
            elif schema.get("additionalProperties", True) is False:
                raise SchemaMismatch(f"{where}: property {name!r} is not in the schema")


def path_pattern(template: str) -> re.Pattern[str]:
    """A documented path as a regex over raw request paths ({key} takes the rest)."""
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join(".+" if p.startswith("{") else re.escape(p) for p in parts) + "$")


_OPERATIONS = [(path_pattern(path), item) for path, item in DOCUMENT["paths"].items()]


def operation(method: str, raw_path: str) -> dict[str, Any] | None:
    """The documented operation a request addresses, or None if it is not documented."""
    path = raw_path.split("?", 1)[0]
    for pattern, item in _OPERATIONS:
        if pattern.match(path):
            return item.get(method.lower())  # type: ignore[no-any-return]
    return None


def check_response(method: str, raw_path: str, status: int, content_type: str, body: bytes) -> None:
    """The answer matches the document: a documented status, its media type, its schema."""
    op = operation(method, raw_path)
    if op is None:
        # Not a documented operation: the sidecar still answers errors as JSON.
        if status >= 400:
            validate(json.loads(body), {"$ref": "#/components/schemas/Error"})
        return
    documented = op["responses"].get(str(status))
    if documented is None:
        raise SchemaMismatch(f"{method} {raw_path}: status {status} is not documented")
    media_type = content_type.split(";", 1)[0].strip()
    content = documented.get("content", {})
    if media_type not in content:
        raise SchemaMismatch(
            f"{method} {raw_path} {status}: content type {media_type} is not one of {list(content)}"
        )
    if media_type == "application/json":
        validate(json.loads(body), content[media_type]["schema"])
