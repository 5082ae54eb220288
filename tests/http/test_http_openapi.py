"""The OpenAPI document is well formed, and the checker the other tests rely on
(openapi_check) really rejects answers that break it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from openapi_check import SchemaMismatch, check_response, operation, resolve, validate
from sidecar_client import HttpClient

from nomadkv.http.openapi import DOCUMENT

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def walk(node: Any, where: str = "#") -> Iterator[tuple[str, Any]]:
    yield where, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{where}/{i}")


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOCUMENT["paths"].items():
        for method, op in item.items():
            yield path, method, op


def test_the_document_is_json_and_openapi_3_1() -> None:
    assert json.loads(json.dumps(DOCUMENT)) == DOCUMENT
    assert DOCUMENT["openapi"] == "3.1.0"
    assert set(DOCUMENT["info"]) >= {"title", "version"}


def test_every_reference_resolves() -> None:
    refs = [node["$ref"] for _, node in walk(DOCUMENT) if isinstance(node, dict) and "$ref" in node]
    assert refs
    for ref in refs:
        assert isinstance(resolve(ref), dict), ref


def test_every_operation_is_complete() -> None:
    ids = []
    schemes = set(DOCUMENT["components"]["securitySchemes"])
    for path, method, op in operations():
        assert method in METHODS
        ids.append(op["operationId"])
        assert op["summary"]
        assert op["responses"], f"{method} {path} documents no response"
        for status, response in op["responses"].items():
            assert re.fullmatch(r"[1-5][0-9][0-9]", status)
            assert response["description"]
        for requirement in op["security"]:
            assert set(requirement) <= schemes
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"\{([^}]+)\}", path)), f"{method} {path}"
    assert len(ids) == len(set(ids)), "operationId must be unique"


def test_schemas_require_only_properties_they_define() -> None:
    for where, node in walk(DOCUMENT):
        if isinstance(node, dict) and "required" in node and "properties" in node:
            assert set(node["required"]) <= set(node["properties"]), where


@pytest.mark.parametrize(
    ("value", "schema"),
    [
        ({"error": 1}, {"$ref": "#/components/schemas/Error"}),
        ({}, {"$ref": "#/components/schemas/Error"}),
        ({"error": "x", "extra": 1}, {"$ref": "#/components/schemas/Error"}),
        ({"key": "k", "deleted": 2}, {"$ref": "#/components/schemas/DeleteResult"}),
        ({"key": "k", "deleted": True}, {"$ref": "#/components/schemas/DeleteResult"}),
        (
            {"key": "k", "value": "v", "encoding": "hex", "ttl": None, "ttl_ms": None},
            {"$ref": "#/components/schemas/KeyValue"},
        ),
        (
            {"key": "k", "value": "v", "encoding": "utf-8", "ttl": "1", "ttl_ms": None},
            {"$ref": "#/components/schemas/KeyValue"},
        ),
        ([[0, 16384]], {"type": "array", "items": {"type": "array", "items": {"maximum": 16383}}}),
        ([[0]], {"type": "array", "items": {"type": "array", "minItems": 2}}),
        ("", {"type": "string", "minLength": 1}),
        (-1, {"type": "integer", "minimum": 0}),
        (1.5, {"type": "integer"}),
    ],
)
def test_the_validator_rejects_what_breaks_a_schema(value: Any, schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaMismatch):
        validate(value, schema)


def test_the_response_check_rejects_undocumented_answers() -> None:
    ok = json.dumps({"key": "k", "deleted": 1}).encode()
    check_response("DELETE", "/api/v1/delete/k", 200, "application/json", ok)
    with pytest.raises(SchemaMismatch, match="not documented"):
        check_response("DELETE", "/api/v1/delete/k", 409, "application/json", b"{}")
    with pytest.raises(SchemaMismatch, match="content type"):
        check_response("DELETE", "/api/v1/delete/k", 200, "text/plain", ok)
    with pytest.raises(SchemaMismatch):
        check_response("GET", "/api/v1/get/k", 200, "application/json", ok)


def test_requests_map_to_their_operations() -> None:
    assert operation("GET", "/api/v1/get/a%2Fb/c")["operationId"] == "get"  # type: ignore[index]
    assert operation("DELETE", "/api/v1/delete/x")["operationId"] == "delete"  # type: ignore[index]
    assert operation("GET", "/api/v1/delete/x") is None
    assert operation("GET", "/metrics?x=1")["operationId"] == "metrics"  # type: ignore[index]
    assert operation("GET", "/metricsx") is None


def test_the_node_serves_this_document(api: HttpClient) -> None:
    answer = api.get("/openapi.json")
    assert answer.content_type.startswith("application/json")
    assert answer.json() == DOCUMENT
