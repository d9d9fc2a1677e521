"""What Galley's REST API promises, for its OpenAPI document: bodies, answers, errors.

The handlers read their bodies themselves (a YAML stream or JSON, bounded and
parsed off the event loop), so FastAPI cannot infer them. Each route declares
here the body it reads and every status it can answer, so that a generated
client or a schema-driven fuzzer reaches every handler, and a test can check
that nothing undeclared ever comes back.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.checks import K8S_LABEL, K8S_SUBDOMAIN
from api.resources import kinds

__all__ = [
    "ApplyResult",
    "Document",
    "ErrorBody",
    "ResourceList",
    "Status",
    "ValidateResult",
    "answers",
    "document",
    "documents_body",
    "enum",
    "resource_body",
    "writer",
]

# The rules Galley enforces, anchored for JSON Schema (which matches anywhere otherwise).
NAME_PATTERN = f"^{K8S_SUBDOMAIN.pattern}$"  # and at most 253 characters
NAMESPACE_PATTERN = f"^{K8S_LABEL.pattern}$"


def enum(values: Iterable[str]) -> dict[str, Any]:
    """A JSON Schema `enum` of the values (sorted, once each)."""
    return {"enum": sorted(set(values))}


class Problem(BaseModel):
    document: str = Field(description="Where the document came from: source name and index")
    path: str = Field(description="The field path inside the document, e.g. spec.http[0].route")
    message: str


class ErrorDetail(BaseModel):
    status: int
    reason: str = Field(description="A word for the class of error, e.g. Invalid or Conflict")
    message: str
    details: list[Problem] = Field(description="One entry per invalid field")


class ErrorBody(BaseModel):
    error: ErrorDetail
    warnings: list[Problem] = Field(default=[], description="Warnings found before the error")


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(max_length=253, pattern=NAME_PATTERN)
    namespace: str = Field("default", pattern=NAMESPACE_PATTERN)
    resourceVersion: str | None = Field(
        None, description="The version read; an update that carries it is compare-and-set"
    )
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class Document(BaseModel):
    """One Istio resource, as kubectl would send it."""

    model_config = ConfigDict(extra="allow")

    apiVersion: str = Field(
        description="GROUP/VERSION, e.g. networking.istio.io/v1",
        json_schema_extra=enum(f"{k.group}/{v}" for k in kinds().values() for v in k.versions),
    )
    kind: str = Field(json_schema_extra=enum(k.kind for k in kinds().values()))
    metadata: Metadata
    spec: dict[str, Any] = Field(description="The kind's spec, validated as Istio does")


class ResourceList(BaseModel):
    apiVersion: str
    kind: str
    items: list[Document]


class ValidateResult(BaseModel):
    valid: bool
    resources: list[str] = Field(description="KIND NAMESPACE/NAME of each document")
    warnings: list[Problem]


class Applied(BaseModel):
    resource: str
    action: str = Field(description="created, configured or unchanged")
    resourceVersion: str


class ApplyResult(BaseModel):
    results: list[Applied]
    warnings: list[Problem]


class Status(BaseModel):
    status: str = Field(examples=["Success"])


_WHY = {
    400: "A malformed request: a path segment, query or body that cannot be read",
    401: "No valid token (writes always need one; reads need one from outside loopback)",
    403: "Writes are disabled: Galley has no token configured",
    404: "No such resource, or no such resource type",
    409: "The stored resource changed meanwhile (or already exists); nothing was stored",
    413: "The body, or the number of documents it holds, is over the limit",
    415: "The body is neither application/json nor application/yaml",
    422: "A document is invalid: every error names its field path; nothing was stored",
    428: "An update without the metadata.resourceVersion it read (and without ?force=true)",
    503: "Consul is unavailable, or Galley is busy checking other bodies: retry",
}


def answers(ok: type[BaseModel], ok_status: int, *errors: int) -> dict[int | str, Any]:
    """The `responses=` of a route: its success body and the errors it can answer."""
    out: dict[int | str, Any] = {ok_status: {"model": ok, "description": "Success"}}
    for status in (*errors, 503):
        out[status] = {"model": ErrorBody, "description": _WHY[status]}
    return out


_YAML = {"schema": {"type": "string", "description": "A YAML stream of documents"}}
_DOCUMENT = {"$ref": "#/components/schemas/Document"}


def writer(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """`openapi_extra` for a route that writes: it needs the bearer token, from anywhere."""
    return {**(extra or {}), "security": [{"bearer": []}]}


def documents_body() -> dict[str, Any]:
    """`openapi_extra` for a route that reads one or more documents."""
    many = {
        "oneOf": [_DOCUMENT, {"type": "array", "items": _DOCUMENT, "minItems": 1, "maxItems": 64}]
    }
    return _body(many, "One document, a JSON list of them, or a YAML stream")


def resource_body() -> dict[str, Any]:
    """`openapi_extra` for a route that reads exactly one document."""
    return _body(_DOCUMENT, "The resource (JSON or YAML)")


def _body(json_schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": json_schema}, "application/yaml": _YAML},
        }
    }


def document(generated: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's document, corrected where it cannot know Galley's answers.

    FastAPI declares a 422 in its own shape on every route with parameters, but
    Galley answers a malformed parameter with 400 in the one error shape (the
    routes that can answer 422 declare it themselves, for an invalid document).
    """
    for operations in generated.get("paths", {}).values():
        for op in operations.values():
            answer = op.get("responses", {}).get("422", {})
            if "HTTPValidationError" in str(answer):
                del op["responses"]["422"]
    schemas = generated.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    generated.setdefault("components", {})["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "Galley's token: needed for writes, and for reads from off loopback",
        }
    }
    return generated
