"""Galley's error responses: one structured body for every 4xx/5xx.

{"error": {"status": 422, "reason": "Invalid", "message": "...",
           "details": [{"document": "...", "path": "spec.http[0]...", "message": "..."}]},
 "warnings": [...]}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.responses import JSONResponse

from api.issues import Issue
from api.resources import Checked

__all__ = ["ApiError", "details", "issue_list"]


def issue_list(checked: Sequence[Checked], severity: str = "error") -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for c in checked:
        items = c.errors if severity == "error" else c.warnings
        out.extend({"document": c.where, "path": i.path, "message": i.message} for i in items)
    return out


def details(where: str, issues: Sequence[Issue]) -> list[dict[str, str]]:
    return [{"document": where, "path": i.path, "message": i.message} for i in issues]


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        details: list[dict[str, str]] | None = None,
        warnings: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.details = details or []
        self.warnings = warnings or []

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {
            "error": {
                "status": self.status,
                "reason": self.reason,
                "message": self.message,
                "details": self.details,
            }
        }
        if self.warnings:
            body["warnings"] = self.warnings
        return JSONResponse(body, status_code=self.status)
