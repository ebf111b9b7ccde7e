"""The refusals the repository model makes, shaped like GitHub's error bodies.

The model raises :class:`ApiError` where GitHub answers 4xx (a ref that
already exists, a stale file sha); the WSGI layer turns it into the JSON
body GitHub sends, so the model never deals with HTTP.
"""

from __future__ import annotations

from typing import Any

DOCS = "https://docs.github.com/rest"


class ApiError(Exception):
    """A refusal GitHub would answer with ``status`` and ``message``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        docs: str = DOCS,
    ) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.errors = errors
        self.docs = docs

    def body(self) -> dict[str, Any]:
        """The JSON body GitHub sends with this refusal."""
        out: dict[str, Any] = {"message": self.message, "documentation_url": self.docs}
        if self.errors is not None:
            out["errors"] = self.errors
        out["status"] = str(self.status)
        return out


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


def validation_failed(resource: str, field: str, code: str, message: str | None = None) -> ApiError:
    """422 "Validation Failed" with one error entry, as GitHub reports field problems."""
    error: dict[str, Any] = {"resource": resource, "field": field, "code": code}
    if message is not None:
        error["message"] = message
    return ApiError(422, "Validation Failed", errors=[error])
