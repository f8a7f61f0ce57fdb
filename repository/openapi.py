"""The OpenAPI 3.1 description of the repository server, served at ``/api/v1/openapi.json``.

Written by hand, next to the routes it describes (`custody.repository.server`), and
checked two ways by the tests: schemathesis generates requests from it
against the real server under gunicorn (no 5xx, every error a JSON
``{"error": ...}``), and a test compares its paths with the Flask routes.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"description": "refused: one sentence naming the field or the reason",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def openapi(max_upload_mib: int) -> dict[str, Any]:
    """The description, with the server's configured upload limit."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "custody repository", "version": "1",
                 "description": "A TUF repository whose targets carry in-toto evidence. The "
                                "public tree is static; the publish API verifies a release's "
                                "supply chain before publishing it in one transaction."},
        "paths": {
            "/healthz": {"get": {
                "summary": "The current timestamp version and its expiry",
                "responses": {"200": {"description": "serving", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}},
            }},
            "/metadata/{name}": {"get": {
                "summary": "TUF metadata (versioned names are immutable)",
                "parameters": [{"name": "name", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the file",
                                      "content": {"application/json": {}}},
                              "404": _ERROR},
            }},
            "/targets/{path}": {"get": {
                "summary": "A target file, hash-prefixed (immutable)",
                "parameters": [{"name": "path", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the file",
                                      "content": {"application/octet-stream": {}}},
                              "404": _ERROR},
            }},
            "/api/v1/releases": {"post": {
                "summary": "Verify a release's supply chain, then publish it",
                "security": [{"token": []}],
                "requestBody": {"required": True, "content": {"multipart/form-data": {
                    "schema": {"$ref": "#/components/schemas/Release"}}}},
                "responses": {
                    "201": {"description": "published", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Published"}}}},
                    "400": _ERROR, "401": _ERROR, "409": _ERROR, "413": _ERROR,
                    "503": _ERROR,
                },
            }},
            "/api/v1/reports": {"post": {
                "summary": "Health reports from clients (a report token)",
                "security": [{"token": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "oneOf": [{"$ref": "#/components/schemas/Report"},
                              {"type": "array", "minItems": 1, "maxItems": 100,
                               "items": {"$ref": "#/components/schemas/Report"}}]}}}},
                "responses": {
                    "202": {"description": "stored; rollouts it halted", "content": {
                        "application/json": {"schema": {"type": "object", "properties": {
                            "accepted": {"type": "integer"},
                            "halted": {"type": "array", "items": {"type": "string"}}}}}}},
                    "400": _ERROR, "401": _ERROR, "503": _ERROR,
                },
            }},
            "/api/v1/rollouts": {"post": {
                "summary": "Start, raise, pause, resume, complete or abort a staged rollout",
                "security": [{"token": []}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/RolloutAction"}}}},
                "responses": {
                    "200": {"description": "done", "content": {"application/json": {}}},
                    "400": _ERROR, "401": _ERROR, "404": _ERROR, "503": _ERROR,
                },
            }},
            "/metrics": {"get": {
                "summary": "Prometheus metrics: expiry per role, rollouts, reports, API counters "
                           "(a metrics or operator token)",
                "security": [{"token": []}],
                "responses": {"200": {"description": "the exposition format",
                                      "content": {"text/plain": {}}},
                              "401": _ERROR},
            }},
            "/api/v1/openapi.json": {"get": {
                "summary": "This description",
                "responses": {"200": {"description": "OpenAPI 3.1",
                                      "content": {"application/json": {}}}},
            }},
        },
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                          "description": "custody-repo token create"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"],
                          "properties": {"error": {"type": "string"}}},
                "Health": {"type": "object", "required": ["status", "timestamp_version"],
                           "properties": {"status": {"type": "string"},
                                          "timestamp_version": {"type": "integer"},
                                          "timestamp_expires": {"type": "string"}}},
                "Published": {"type": "object", "required": ["target", "name", "version"],
                              "properties": {"target": {"type": "string"},
                                             "name": {"type": "string"},
                                             "version": {"type": "string"}}},
                "Report": {
                    "type": "object", "required": ["package", "result", "client_id"],
                    "properties": {
                        "package": {"type": "string", "maxLength": 64},
                        "from": {"type": ["string", "null"], "maxLength": 64},
                        "to": {"type": ["string", "null"], "maxLength": 64},
                        "result": {"type": "string", "enum": [
                            "installed", "updated", "up-to-date", "skipped", "unhealthy",
                            "rolled-back", "refused", "unreachable", "not-found", "failed",
                            "interrupted"]},
                        "exit_code": {"type": "integer", "minimum": 0, "maximum": 255},
                        "reason": {"type": "string", "maxLength": 300},
                        "client_id": {"type": "string", "maxLength": 64},
                    },
                },
                "RolloutAction": {
                    "type": "object", "required": ["package", "channel", "action"],
                    "properties": {
                        "package": {"type": "string"}, "channel": {"type": "string"},
                        "action": {"type": "string", "enum": [
                            "start", "raise", "pause", "resume", "complete", "abort"]},
                        "version": {"type": "string"},
                        "percent": {"type": "number", "minimum": 0, "maximum": 100},
                        "max_failure_rate": {"type": "number", "minimum": 0, "maximum": 1},
                        "min_reports": {"type": "integer", "minimum": 1},
                        "reason": {"type": "string"},
                    },
                },
                "Release": {
                    "type": "object", "required": ["name", "version", "artifact", "layout"],
                    "description": f"at most {max_upload_mib} MiB in all",
                    "properties": {
                        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,62}$",
                                 "description": "package name"},
                        "version": {"type": "string", "maxLength": 64,
                                    "description": "PEP 440; equal spellings are one version"},
                        "channel": {"type": "string",
                                    "description": "channel to move (empty: none); never to "
                                                   "a lower version unless allowed"},
                        "allow_channel_downgrade": {"type": "string", "enum": ["", "1"]},
                        "platform": {"type": "string",
                                     "description": "the platform this build is for "
                                                    "(linux-x86_64, darwin-arm64; empty: "
                                                    "every platform)"},
                        "artifact": {"type": "string", "format": "binary"},
                        "layout": {"type": "string", "format": "binary",
                                   "description": "a layout published in the layouts role"},
                        "links": {"type": "array",
                                  "items": {"type": "string", "format": "binary"},
                                  "description": "<step>.<keyid8>.link files"},
                    },
                },
            },
        },
    }
