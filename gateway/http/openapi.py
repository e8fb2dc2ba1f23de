"""The OpenAPI 3.1 description of the HTTP API (PROTOCOL.md section 7), written by hand.

Invariant: every route of the app is described here and nothing else is; a test checks
both directions. Limits in the description (TTL, window size, id length) are the
configured ones, so generated requests probe the real boundaries.
"""

from __future__ import annotations

from typing import Any

from cluster.settings import GatewaySettings, QueryLimits

from ..live.openapi_live import live_paths

__all__ = ["spec"]

_J = "application/json"
_ERROR_CODES = [
    "invalid_request", "invalid_query", "unauthorized", "forbidden", "not_found",
    "precondition_failed", "too_large", "invalid_row", "rate_limited", "unavailable", "gone",
]
_STATUS_TEXT = {
    400: "invalid_request (bad JSON, name, id or parameter) or invalid_query",
    401: "unauthorized: no token, or a token that does not verify",
    403: "forbidden: the token lacks the scope",
    404: "not_found: no such row for this tenant",
    405: "method not allowed",
    412: "precondition_failed: If-Match / If-None-Match failed; carries the current version",
    413: "too_large: body or row over the limit",
    422: "invalid_row: the body is JSON but not an object, or holds refused values",
    429: "rate_limited",
    503: ("unavailable: Redis unreachable or the circuit breaker open; nothing was written,"
          " unless the error carries outcome: unknown (the reply was lost)"),
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_J: {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ref("Error"), _STATUS_TEXT[s]) for s in statuses}


def _schemas(limits: QueryLimits) -> dict[str, Any]:
    version = {"type": "integer", "minimum": 0}
    obj: dict[str, Any] = {"type": "object"}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "enum": _ERROR_CODES},
                        "message": {"type": "string"},
                        "version": {"type": ["integer", "null"]},
                    },
                }
            },
        },
        "Row": {**obj, "description": "the row's values (a JSON object)"},
        "Written": {
            "type": "object",
            "required": ["id", "version"],
            "properties": {"id": {"type": "string"}, "version": version},
        },
        "RowAnswer": {
            "type": "object",
            "required": ["id", "version", "row"],
            "properties": {"id": {"type": "string"}, "version": version, "row": _ref("Row")},
        },
        "Query": {
            "type": "object",
            "additionalProperties": False,
            "required": ["limit"],
            "properties": {
                "where": {**obj, "description": "filter (PROTOCOL.md section 2)"},
                "sort": {"type": "array", "items": {"type": "string"}},
                "limit": {"type": "integer", "minimum": 1, "maximum": limits.max_limit},
                "after": {"type": ["string", "null"]},
            },
        },
        "QueryPage": {
            "type": "object",
            "required": ["rows", "next"],
            "properties": {
                "rows": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "version", "row", "cursor"],
                        "properties": {
                            "id": {"type": "string"},
                            "version": version,
                            "row": _ref("Row"),
                            "cursor": {"type": "string"},
                        },
                    },
                },
                "next": {"type": ["string", "null"]},
            },
        },
        "BatchOp": {
            "type": "object",
            "additionalProperties": False,
            "required": ["op", "entity", "id"],
            "properties": {
                "op": {"type": "string", "enum": ["put", "patch", "delete"]},
                "entity": {"type": "string"},
                "id": {"type": "string"},
                "row": _ref("Row"),
                "ttl": {"type": "number", "exclusiveMinimum": 0},
                "if_match": version,
            },
        },
        "BatchRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["ops"],
            "properties": {"ops": {"type": "array", "items": _ref("BatchOp")}},
        },
        "BatchResults": {
            "type": "object",
            "required": ["results"],
            "properties": {
                "results": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["status"],
                        "properties": {
                            "status": {"type": "integer"},
                            "id": {"type": "string"},
                            "version": version,
                            "error": {"$ref": "#/components/schemas/Error/properties/error"},
                        },
                    },
                }
            },
        },
    }


def _row_path(g: GatewaySettings) -> dict[str, Any]:
    entity = {
        "name": "entity", "in": "path", "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$"},
    }
    row_id = {
        "name": "id", "in": "path", "required": True,
        "description": "1-256 characters, no control characters; percent-encode `/`",
        "schema": {"type": "string", "minLength": 1, "maxLength": 256},
    }
    ttl = {
        "name": "ttl", "in": "query", "required": False,
        "description": "expire the row after this many seconds",
        "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": g.max_ttl_seconds},
    }
    if_match = {
        "name": "If-Match", "in": "header", "required": False,
        "description": "write only if the current version is this one, e.g. \"42\"",
        "schema": {"type": "string"},
    }
    if_none = {
        "name": "If-None-Match", "in": "header", "required": False,
        "description": "`*`: create only (PUT); a version on GET: 304 when unchanged",
        "schema": {"type": "string"},
    }
    written = _json(_ref("Written"), "written; ETag is the new version")
    body = {"required": True, "content": {_J: {"schema": _ref("Row")}}}
    patch_body = {
        "required": True,
        "content": {
            "application/merge-patch+json": {"schema": _ref("Row")},
            _J: {"schema": _ref("Row")},
        },
    }
    write_errors = _errors(400, 401, 403, 404, 412, 413, 422, 429, 503)
    return {
        "parameters": [entity, row_id],
        "put": {
            "operationId": "putRow", "summary": "write a whole row",
            "parameters": [ttl, if_match, if_none], "requestBody": body,
            "responses": {"200": written, **write_errors},
        },
        "patch": {
            "operationId": "patchRow", "summary": "merge-patch a row (RFC 7396)",
            "parameters": [ttl, if_match], "requestBody": patch_body,
            "responses": {"200": written, **write_errors},
        },
        "delete": {
            "operationId": "deleteRow", "summary": "delete a row",
            "parameters": [if_match],
            "responses": {"200": written, **_errors(400, 401, 403, 404, 412, 429, 503)},
        },
        "get": {
            "operationId": "getRow", "summary": "read a row",
            "parameters": [if_none],
            "responses": {
                "200": _json(_ref("RowAnswer"), "the row; ETag is its version"),
                "304": {"description": "not modified (If-None-Match matched)"},
                **_errors(400, 401, 403, 404, 429, 503),
            },
        },
    }


def _asset_paths(g: GatewaySettings, plain: dict[str, Any]) -> dict[str, Any]:
    """The browser files (`gateway.http.assets`); the demo's only with `demo` on."""
    def file(operation: str, media_type: str, description: str) -> dict[str, Any]:
        return {"get": {**plain, "operationId": operation, "responses": {
            "200": {"description": description,
                    "content": {media_type: {"schema": {"type": "string"}}}},
            "304": {"description": "not modified (If-None-Match matched)"}}}}

    paths = {"/v1/client.js": file("clientJs", "text/javascript",
                                   "the JavaScript client, an ES module (docs/browser.md)")}
    if g.demo:
        paths.update({
            "/": file("demoPage", "text/html", "the live demo page"),
            "/demo.js": file("demoScript", "text/javascript", "the demo page's script"),
            "/demo.css": file("demoStyle", "text/css", "the demo page's style"),
            "/v1/demo/token": {"post": {**plain, "operationId": "demoToken", "responses": {
                "200": _json({"type": "object", "required": ["token", "expires_in"],
                              "properties": {"token": {"type": "string"},
                                             "expires_in": {"type": "integer"}}},
                             "a short-lived token for tenant demo, entity demo")}}},
        })
    return paths


def spec(
    gateway: GatewaySettings | None = None, limits: QueryLimits | None = None
) -> dict[str, Any]:
    """The OpenAPI document for a gateway with these settings."""
    g = gateway or GatewaySettings()
    q = limits or QueryLimits()
    plain: dict[str, Any] = {"security": []}
    query_entity = {
        "name": "entity", "in": "path", "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$"},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "lq HTTP API", "version": "1"},
        "security": [{"bearer": []}],
        "paths": {
            "/v1/entities/{entity}/rows/{id}": _row_path(g),
            "/v1/entities/{entity}/query": {
                "post": {
                    "operationId": "query", "summary": "one page of a query",
                    "parameters": [query_entity],
                    "requestBody": {"required": True, "content": {_J: {"schema": _ref("Query")}}},
                    "responses": {
                        "200": _json(_ref("QueryPage"), "the page; `next` when more rows follow"),
                        **_errors(400, 401, 403, 413, 429, 503),
                    },
                }
            },
            "/v1/batch": {
                "post": {
                    "operationId": "batch", "summary": "many writes, one result per op",
                    "requestBody": {
                        "required": True, "content": {_J: {"schema": _ref("BatchRequest")}}
                    },
                    "responses": {
                        "200": _json(_ref("BatchResults"), "one result per op, in order"),
                        **_errors(400, 401, 413, 429, 503),
                    },
                }
            },
            "/v1/tickets": {
                "post": {
                    "operationId": "issueTicket",
                    "summary": "a single-use ticket for ?ticket= on /v1/ws, /v1/sse, /v1/poll",
                    "responses": {
                        "200": _json({
                            "type": "object", "required": ["ticket", "expires_in"],
                            "properties": {"ticket": {"type": "string"},
                                           "expires_in": {"type": "integer", "minimum": 0}},
                        }, "the ticket and how many seconds it stays valid"),
                        **_errors(401, 503),
                    },
                }
            },
            "/healthz": {"get": {**plain, "operationId": "healthz", "responses": {
                "200": _json({"type": "object"}, "the process is alive")}}},
            "/readyz": {"get": {**plain, "operationId": "readyz", "responses": {
                "200": _json({
                    "type": "object", "required": ["ready", "live_shards"],
                    "properties": {"ready": {"const": True},
                                   "live_shards": {"type": "integer", "minimum": 0}},
                }, "Redis reachable; how many shards are live"),
                "503": _json({"type": "object"}, "Redis unreachable")}}},
            "/metrics": {"get": {**plain, "operationId": "metrics", "responses": {
                "200": {"description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {**plain, "operationId": "openapi", "responses": {
                "200": _json({"type": "object"}, "this document")}}},
            **live_paths(),
            **_asset_paths(g, plain),
        },
        "components": {
            "schemas": _schemas(q),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
