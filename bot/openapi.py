"""The OpenAPI 3.1 document of Herald's HTTP API, served at ``GET /openapi.json`` (every route of
SPEC's table, with the request and answer shapes the routes check)."""

from __future__ import annotations

from typing import Any

from bot.recipients.api import openapi_paths as deliveries_paths


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"type": "object"}}},
    }


_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}
_STATUS = {
    "type": "object",
    "required": ["id", "state", "recipients", "channels", "people", "sla"],
    "properties": {
        "id": {"type": "string"},
        "state": {"type": "string", "enum": ["scheduled", "queued", "sending", "done", "cancelled"]},
        "recipients": {"type": "integer"},
        "channels": {
            "type": "object",
            "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
        "people": {
            "type": "object",
            "properties": {
                name: {"type": "integer"}
                for name in ("reached", "unreached", "unreachable", "cancelled", "confirmed")
            },
        },
        "sla": {
            "type": "object",
            "properties": {
                "deliver_within_s": {"type": "number"},
                "last_delivery_s": {"type": ["number", "null"]},
                "reach": {"type": "number", "minimum": 0, "maximum": 1},
                "reach_target": {"type": "number", "minimum": 0, "maximum": 1},
                "met": {"type": ["boolean", "null"]},
            },
        },
    },
}
_GENERIC_ALERT = {
    "type": "object",
    "required": ["summary", "severity"],
    "properties": {
        "summary": {"type": "string"},
        "severity": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "description": {"type": "string"},
        "status": {"type": "string", "enum": ["firing", "resolved"]},
        "fingerprint": {"type": "string"},
    },
}


def openapi_document(public_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 description of Herald's HTTP API (every route of SPEC's table)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Herald",
            "version": "0.1.0",
            "description": "Chat-ops notifications for IT support.",
        },
        "servers": [{"url": public_url}],
        "paths": {
            **_slack_paths(),
            **_alert_hook_paths(),
            **_bounce_paths(),
            **_twilio_paths(),
            **_preference_paths(),
            **_api_paths(),
            **_operations_paths(),
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "hmac": {"type": "apiKey", "in": "header", "name": "X-Herald-Signature"},
            }
        },
    }


def _slack_paths() -> dict[str, Any]:
    return {
        "/slack/events": {
            "post": {
                "summary": "Slack slash commands, interactivity and events (Bolt)",
                "description": "Signed by Slack (X-Slack-Signature, X-Slack-Request-Timestamp); "
                "a bad or stale (over 5 minutes) signature is answered 401.",
                "responses": {
                    "200": {"description": "acknowledged"},
                    "400": _json("signed, but not a Slack payload", _ERROR),
                    "401": _json("bad or stale signature", _ERROR),
                    "413": _json("body over 1 MiB", _ERROR),
                },
            }
        },
    }


def _alert_hook_paths() -> dict[str, Any]:
    responses = {
        "202": _json("stored"),
        "400": _json("unreadable: not JSON, nested too deeply", _ERROR),
        "401": _json("unauthenticated", _ERROR),
        "413": _json("body over 4 MiB", _ERROR),
        "422": _json("invalid field (named in `field`)", _ERROR),
        "503": _json("the alert could not be stored: retry", _ERROR),
    }
    return {
        "/hooks/alertmanager": _alert_hook("Prometheus Alertmanager webhook, payload version 4", responses),
        "/hooks/grafana": _alert_hook("Grafana alerting webhook", responses),
        "/hooks/alerts": _alert_hook(
            "Generic JSON alert",
            responses,
            requestBody={"content": {"application/json": {"schema": _GENERIC_ALERT}}},
        ),
    }


def _alert_hook(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A POST alert webhook, authenticated by bearer token or HMAC signature."""
    security: list[dict[str, list[str]]] = [{"bearer": []}, {"hmac": []}]
    return {"post": {"summary": summary, "security": security, **extra, "responses": responses}}


def _bounce_paths() -> dict[str, Any]:
    text: dict[str, Any] = {"type": "string"}
    fields: dict[str, Any] = {
        "recipient": text,
        "status": {"type": "string", "pattern": r"^[245]\.\d+\.\d+$"},
    }
    fields |= {
        "action": {"enum": ["failed", "delayed"]},
        "token": text,
        "message_id": text,
        "diagnostic": text,
    }
    report = {"type": "object", "required": ["recipient", "status", "action"], "properties": fields}
    responses = {"200": _json("recorded: outcome, delivery_id"), "401": _json("unauthenticated", _ERROR)}
    responses |= {"400": _json("not a JSON object", _ERROR), "422": _json("invalid field", _ERROR)}
    responses |= {"413": _json("body over 4 MiB", _ERROR)}
    body = {"content": {"application/json": {"schema": report}}}
    return {
        "/hooks/bounces": _alert_hook("A delivery report (bounce) from a relay", responses, requestBody=body)
    }


def _twilio_paths() -> dict[str, Any]:
    text: dict[str, Any] = {"content": {"text/plain": {}}}
    refusals = {
        "400": {"description": "a parameter holds a NUL or is too long", **text},
        "403": {"description": "bad or missing X-Twilio-Signature", **text},
        "404": {"description": "sms is not configured (twilio.auth_token)", **text},
        "413": {"description": "body over 64 KiB", **text},
    }
    return {
        "/hooks/twilio/status": {
            "post": {
                "summary": "Twilio status callback (X-Twilio-Signature verified)",
                "responses": {"204": {"description": "recorded"}, **refusals},
            }
        },
        "/hooks/twilio/inbound": {
            "post": {
                "summary": "Inbound SMS: STOP/UNSUBSCRIBE opt out, START opts in, HELP answers",
                "responses": {"200": {"description": "TwiML reply", "content": {"text/xml": {}}}, **refusals},
            }
        },
    }


def _preference_paths() -> dict[str, Any]:
    html: dict[str, Any] = {"content": {"text/html": {}}}
    unknown = {"description": "unknown or expired token", **html}
    return {
        "/u/{token}": {
            "parameters": [_path_parameter("token")],
            "get": {
                "summary": "Preferences page (never changes anything)",
                "responses": {"200": {"description": "page", **html}, "404": unknown},
            },
            "post": {
                "summary": "List-Unsubscribe=One-Click unsubscribes (RFC 8058); other posts save the form",
                "responses": {
                    "200": {"description": "saved", **html},
                    "400": {"description": "the form has a bad choice (shown on the page)", **html},
                    "404": unknown,
                    "413": {"description": "form over 64 KiB", **html},
                },
            },
        },
        "/c/{token}": {
            "parameters": [_path_parameter("token")],
            "get": {
                "summary": "Confirmation page with a button (never confirms: mail scanners prefetch links)",
                "responses": {
                    "200": {"description": "page", "content": {"text/html": {}}},
                    "404": {"description": "unknown or expired token", "content": {"text/html": {}}},
                },
            },
            "post": {
                "summary": "Confirm receipt of the notification (the first confirmation counts)",
                "responses": {
                    "200": {"description": "confirmed", "content": {"text/html": {}}},
                    "404": {"description": "unknown or expired token", "content": {"text/html": {}}},
                },
            },
        },
    }


def _api_paths() -> dict[str, Any]:
    return {
        "/api/notifications/{id}": {
            "parameters": [_path_parameter("id")],
            "get": {
                "summary": "Status of one notification, as `herald status --json`",
                "security": [{"bearer": []}],
                "responses": {
                    "200": _json("status", _STATUS),
                    "401": _json("unauthorized", _ERROR),
                    "404": _json("no such notification, or the API is off", _ERROR),
                },
            },
        },
        **deliveries_paths(_json, _ERROR, _path_parameter),
    }


def _operations_paths() -> dict[str, Any]:
    return {
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _json("up")}}},
        "/readyz": {
            "get": {
                "summary": "Readiness: the database answers",
                "responses": {"200": _json("ready"), "503": _json("database unreachable")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {"description": "text exposition format", "content": {"text/plain": {}}}
                },
            }
        },
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": _json("OpenAPI 3.1")}}},
    }


def _path_parameter(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
