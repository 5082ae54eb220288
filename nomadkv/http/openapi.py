"""The OpenAPI 3.1 document of the HTTP sidecar, served at ``/openapi.json``.

Owns the published contract: every route the sidecar serves, every status
it can answer, and the JSON schema of every body. The sidecar's tests check
the app against this document both ways (every route documented, every
documented path served) and validate live responses against the schemas.

Pure data: built once at import.
"""

from __future__ import annotations

from typing import Any

from nomadkv import __version__

MAX_BODY_BYTES = 4 * 1024 * 1024  # a JSON request body; larger values go through RESP


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


UNAUTHORIZED = {
    "description": "A password is set (requirepass) and the request did not give it. "
    "The WWW-Authenticate header names the Bearer and Basic schemes.",
    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    "content": {"application/json": {"schema": _ref("Error")}},
}

UNAVAILABLE = _error(
    "Not served here now: the node is shutting down, or (cluster mode) it is not the "
    "leader (the error is Redis's MOVED text naming the leader's RESP address) or the "
    "cluster has no leader (CLUSTERDOWN), or leadership changed before the write committed."
)

KEY_PARAMETER = {
    "name": "key",
    "in": "path",
    "required": True,
    "description": "The key, percent-encoded. Percent-escapes decode to bytes, so keys that "
    "are not UTF-8 can be addressed too (%FF is the byte 0xFF); '/' may appear unencoded.",
    "schema": {"type": "string", "minLength": 1},
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "Every error answer. Errors from a command carry Redis's text, "
        "error code first (ERR, WRONGTYPE).",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
        "additionalProperties": False,
    },
    "SetRequest": {
        "type": "object",
        "properties": {
            "key": {"type": "string", "minLength": 1, "description": "The key, as UTF-8 text."},
            "value": {
                "type": "string",
                "description": "The value: UTF-8 text, or base64 when encoding is base64.",
            },
            "ttl": {
                "type": ["integer", "null"],
                "minimum": 1,
                "description": "Time to live in whole seconds (as SET ... EX); absent or "
                "null: no expiry (an existing one is removed, as SET does).",
            },
            "encoding": {
                "type": "string",
                "enum": ["utf-8", "base64"],
                "default": "utf-8",
                "description": "How value is written; base64 stores arbitrary bytes.",
            },
        },
        "required": ["key", "value"],
        "additionalProperties": False,
    },
    "SetResult": {
        "type": "object",
        "properties": {
            "key": {"type": "string"},
            "result": {"type": "string", "const": "OK"},
            "ttl": {"type": ["integer", "null"], "description": "The ttl that was set."},
        },
        "required": ["key", "result", "ttl"],
        "additionalProperties": False,
    },
    "KeyValue": {
        "type": "object",
        "properties": {
            "key": {
                "type": "string",
                "description": "The key as text; bytes that are not UTF-8 appear as \\xNN.",
            },
            "value": {"type": "string"},
            "encoding": {
                "type": "string",
                "enum": ["utf-8", "base64"],
                "description": "utf-8 when the stored bytes are valid UTF-8 (value is that "
                "text), base64 otherwise (value is the bytes in base64).",
            },
            "ttl": {
                "type": ["integer", "null"],
                "description": "Seconds left, rounded as Redis's TTL rounds; null: no expiry.",
            },
            "ttl_ms": {
                "type": ["integer", "null"],
                "description": "Milliseconds left, as PTTL answers; null: no expiry.",
            },
        },
        "required": ["key", "value", "encoding", "ttl", "ttl_ms"],
        "additionalProperties": False,
    },
    "DeleteResult": {
        "type": "object",
        "properties": {"key": {"type": "string"}, "deleted": {"type": "integer", "const": 1}},
        "required": ["key", "deleted"],
        "additionalProperties": False,
    },
    "NodeInfo": {
        "type": "object",
        "description": "The node that answers.",
        "properties": {
            "id": {
                "type": "string",
                "description": "Cluster mode: the member id (40 hex, from the Raft id, stable). "
                "Standalone: a random run id per process, as Redis's run_id.",
            },
            "address": {"type": "string", "description": "RESP host:port."},
            "http_address": {"type": "string", "description": "HTTP sidecar host:port."},
            "role": {"type": "string", "enum": ["leader", "follower", "candidate", "learner"]},
            "version": {"type": "string"},
            "uptime_seconds": {"type": "number", "minimum": 0},
            "keys": {"type": "integer", "minimum": 0},
            "applied_index": {"type": "integer", "minimum": 0},
            "synced_index": {"type": "integer", "minimum": 0},
            "snapshot_index": {"type": "integer", "minimum": 0},
            "connected_clients": {"type": "integer", "minimum": 0},
        },
        "required": [
            "id",
            "address",
            "http_address",
            "role",
            "version",
            "uptime_seconds",
            "keys",
            "applied_index",
            "synced_index",
            "snapshot_index",
            "connected_clients",
        ],
        "additionalProperties": False,
    },
    "Member": {
        "type": "object",
        "description": "One node of the cluster, as this node knows it.",
        "properties": {
            "id": {"type": "string"},
            "raft_id": {"type": ["integer", "null"], "description": "null when standalone."},
            "address": {"type": "string", "description": "RESP host:port."},
            "role": {"type": "string", "enum": ["leader", "follower", "learner"]},
        },
        "required": ["id", "raft_id", "address", "role"],
        "additionalProperties": False,
    },
    "ShardGroup": {
        "type": "object",
        "description": "A set of slots and the replicas (a Raft group) that serve them.",
        "properties": {
            "id": {"type": "integer", "minimum": 0},
            "slots": {
                "type": "array",
                "description": "Inclusive [first, last] slot ranges.",
                "items": {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 0, "maximum": 16383},
                    "minItems": 2,
                    "maxItems": 2,
                },
            },
            "leader": {
                "type": ["string", "null"],
                "description": "Member id of the leader; null while there is none.",
            },
            "members": {"type": "array", "items": {"type": "string"}},
            "term": {"type": "integer", "minimum": 0},
            "commit_index": {"type": "integer", "minimum": 0},
        },
        "required": ["id", "slots", "leader", "members", "term", "commit_index"],
        "additionalProperties": False,
    },
    "ClusterInfo": {
        "type": "object",
        "properties": {
            "cluster_enabled": {"type": "boolean"},
            "state": {
                "type": "string",
                "enum": ["ok", "fail"],
                "description": "fail while the cluster has no leader.",
            },
            "slots": {"type": "integer", "const": 16384},
            "node": _ref("NodeInfo"),
            "members": {"type": "array", "items": _ref("Member")},
            "shard_groups": {"type": "array", "items": _ref("ShardGroup")},
        },
        "required": ["cluster_enabled", "state", "slots", "node", "members", "shard_groups"],
        "additionalProperties": False,
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ok", "shutting_down"]},
            "applied_index": {"type": "integer", "minimum": 0},
            "synced_index": {"type": "integer", "minimum": 0},
            "uptime_seconds": {"type": "number", "minimum": 0},
        },
        "required": ["status", "applied_index", "synced_index", "uptime_seconds"],
        "additionalProperties": False,
    },
}

SECURED: list[dict[str, list[str]]] = [{"bearer": []}, {"basic": []}]

PATHS: dict[str, Any] = {
    "/api/v1/set": {
        "post": {
            "operationId": "set",
            "summary": "Set a key to a string, with an optional ttl (SET key value [EX ttl]).",
            "description": "Logged, fsync'd and applied exactly as a RESP SET: the answer comes "
            "once the write is durable under the node's appendfsync policy. The body is JSON "
            f"of at most {MAX_BODY_BYTES} bytes, whatever its Content-Type.",
            "security": SECURED,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("SetRequest")}},
            },
            "responses": {
                "200": _json(_ref("SetResult"), "Stored."),
                "400": _error("Bad JSON, a missing or mistyped field, an invalid ttl."),
                "401": UNAUTHORIZED,
                "413": _error("The body or the value is too large."),
                "503": UNAVAILABLE,
            },
        }
    },
    "/api/v1/get/{key}": {
        "get": {
            "operationId": "get",
            "summary": "Read a key (GET key), with its time to live.",
            "description": "In cluster mode the leader answers linearizably (after a ReadIndex "
            "round), as it does RESP reads.",
            "security": SECURED,
            "parameters": [KEY_PARAMETER],
            "responses": {
                "200": _json(_ref("KeyValue"), "The key's value."),
                "401": UNAUTHORIZED,
                "404": _error("No such key (or it has expired)."),
                "409": _error("The key holds another type than a string (WRONGTYPE)."),
                "503": UNAVAILABLE,
            },
        }
    },
    "/api/v1/delete/{key}": {
        "delete": {
            "operationId": "delete",
            "summary": "Delete a key (DEL key).",
            "description": "Logged, fsync'd and applied exactly as a RESP DEL.",
            "security": SECURED,
            "parameters": [KEY_PARAMETER],
            "responses": {
                "200": _json(_ref("DeleteResult"), "Deleted."),
                "401": UNAUTHORIZED,
                "404": _error("No such key: nothing was deleted."),
                "503": UNAVAILABLE,
            },
        }
    },
    "/api/v1/cluster/info": {
        "get": {
            "operationId": "clusterInfo",
            "summary": "The cluster as this node sees it: itself, its members, its shard groups.",
            "security": SECURED,
            "responses": {
                "200": _json(_ref("ClusterInfo"), "The cluster view."),
                "401": UNAUTHORIZED,
            },
        }
    },
    "/health": {
        "get": {
            "operationId": "health",
            "summary": "Liveness and progress; never needs the password.",
            "security": [],
            "responses": {
                "200": _json(_ref("Health"), "Serving."),
                "503": _json(_ref("Health"), "Shutting down."),
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics, text exposition format 0.0.4.",
            "description": "Needs the password when one is set: give Prometheus "
            "`authorization: {credentials: <password>}` (a bearer token) or basic_auth.",
            "security": SECURED,
            "responses": {
                "200": {
                    "description": "The metrics.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "401": UNAUTHORIZED,
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document.",
            "security": SECURED,
            "responses": {
                "200": _json({"type": "object"}, "The OpenAPI document."),
                "401": UNAUTHORIZED,
            },
        }
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "NomadKV HTTP sidecar",
        "version": __version__,
        "description": "REST access to the same keyspace as the RESP port, Prometheus metrics "
        "and health. When requirepass is set, every operation but /health needs "
        "`Authorization: Bearer <password>` or HTTP Basic with any user name and the password.",
    },
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "The requirepass."},
            "basic": {
                "type": "http",
                "scheme": "basic",
                "description": "Any user name; the requirepass as the password.",
            },
        },
    },
}
