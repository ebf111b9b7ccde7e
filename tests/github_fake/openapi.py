"""GitHub's own OpenAPI description, used as the referee for every request and answer.

The fake GitHub must not be more lenient than the real one: a request that
GitHub would refuse (unknown route, missing parameter, a body that does not
match the documented schema) is a bug in the client, even when the fake could
have made sense of it. This module answers "would GitHub accept this?" from
the official description (``../shared/github/rest-api-subset.json``, OpenAPI
3.0, every ``$ref`` resolved) so the rules are GitHub's, not ours.

OpenAPI 3.0 schemas are almost JSON Schema draft 4; the differences that
matter here are handled by :func:`to_json_schema`: ``nullable: true`` becomes
"or null", ``oneOf`` becomes ``anyOf`` (see there why), and the ``uri`` /
``date-time`` formats are checked by a small stdlib format checker
(jsonschema's own needs optional packages).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jsonschema import Draft4Validator, FormatChecker

#: The description, vendored beside this module (a copy of
#: ``../shared/github/rest-api-subset.json``, see ``spec/README.md``) so that a
#: clone runs anywhere; ``GITHUB_FAKE_OPENAPI`` overrides it.
DEFAULT_SPEC = Path(__file__).resolve().parent / "spec" / "rest-api-subset.json"
#: The shared original, when the project sits beside ``shared/``.
SHARED_SPEC = Path(__file__).resolve().parents[3] / "shared" / "github" / "rest-api-subset.json"

#: Path parameters that GitHub lets span several segments (``heads/a/b``).
MULTI_SEGMENT_PARAMS = frozenset({"ref", "path"})

#: Request fields GitHub accepts that the description (2022-11-28) predates.
#: Copilot assignment: GitHub changelog 2025-12-03, "assign issues to Copilot
#: using the API".
EXTENSION_FIELDS: Mapping[tuple[str, str], Mapping[str, Any]] = {
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/assignees"): {
        "agent_assignment": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                name: {"type": "string"}
                for name in (
                    "target_repo",
                    "base_branch",
                    "custom_instructions",
                    "custom_agent",
                    "model",
                )
            },
        }
    }
}

JsonSchema = dict[str, Any]


@dataclass(frozen=True)
class Parameter:
    """One path or query parameter of an operation."""

    name: str
    location: str
    required: bool
    schema: JsonSchema


@dataclass(frozen=True)
class Operation:
    """One method on one path template, with what GitHub accepts and answers."""

    method: str
    template: str
    operation_id: str
    pattern: re.Pattern[str] = field(repr=False)
    path_params: Mapping[str, Parameter] = field(repr=False)
    query_params: Mapping[str, Parameter] = field(repr=False)
    body_schema: JsonSchema | None = field(repr=False)
    body_required: bool = field(repr=False)
    #: status -> JSON schema of the answer (None: documented without a JSON body).
    responses: Mapping[int, JsonSchema | None] = field(repr=False)

    @property
    def route(self) -> str:
        """``"POST /repos/{owner}/{repo}/issues"``: the name counters use."""
        return f"{self.method} {self.template}"

    @property
    def literal_weight(self) -> int:
        """How much of the template is fixed text; the most specific match wins."""
        return len(re.sub(r"\{[^}]+\}", "", self.template))


def to_json_schema(schema: Any) -> Any:
    """Turn an OpenAPI 3.0 schema into JSON Schema draft 4.

    Walks only schema positions (never the names inside ``properties``), and
    rewrites ``nullable: true`` into a schema that also accepts ``null``.
    ``oneOf`` becomes ``anyOf``: GitHub's description uses it for "one of
    these shapes" even where the shapes overlap (the 409 of ``PUT
    /contents`` is two error objects without required fields, the 422
    ``value`` three nullable types), so with ``oneOf`` nothing could match.
    """
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties"):
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = to_json_schema(value)
        elif key == "oneOf":
            out["anyOf"] = [to_json_schema(sub) for sub in value]
        elif key in ("allOf", "anyOf"):
            out[key] = [to_json_schema(sub) for sub in value]
        elif key in ("nullable", "example", "examples", "description", "discriminator"):
            continue
        else:
            out[key] = value
    if schema.get("nullable") is True:
        combined = any(k in out for k in ("allOf", "anyOf", "oneOf", "not"))
        if "type" in out and isinstance(out["type"], str) and not combined:
            out["type"] = [out["type"], "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [{"type": "null"}, out]}
    return out


def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme) and bool(parts.netloc or parts.path) and " " not in value


_DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def is_date_time(value: object) -> bool:
    """RFC 3339 date-time, as GitHub writes them (``2024-05-01T12:00:00Z``)."""
    if not isinstance(value, str):
        return True
    if not _DATE_TIME.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


FORMATS = FormatChecker(formats=())
FORMATS.checks("uri")(_is_uri)
FORMATS.checks("date-time")(is_date_time)


def _compile(template: str) -> re.Pattern[str]:
    parts = []
    for literal, name in re.findall(r"([^{]*)(?:\{(\w+)\})?", template):
        parts.append(re.escape(literal))
        if name:
            body = ".+" if name in MULTI_SEGMENT_PARAMS else "[^/]+"
            parts.append(f"(?P<{name}>{body})")
    return re.compile("^" + "".join(parts) + "$")


def _operation(method: str, template: str, raw: Mapping[str, Any]) -> Operation:
    params = [
        Parameter(p["name"], p["in"], bool(p.get("required")), to_json_schema(p.get("schema", {})))
        for p in raw.get("parameters", [])
    ]
    body = raw.get("requestBody")
    body_schema = None
    if body is not None:
        media = body.get("content", {}).get("application/json")
        if media is not None:
            body_schema = to_json_schema(media.get("schema", {}))
    responses: dict[int, JsonSchema | None] = {}
    for status, answer in raw.get("responses", {}).items():
        media = answer.get("content", {}).get("application/json")
        responses[int(status)] = to_json_schema(media["schema"]) if media else None
    return Operation(
        method=method.upper(),
        template=template,
        operation_id=raw.get("operationId", ""),
        pattern=_compile(template),
        path_params={p.name: p for p in params if p.location == "path"},
        query_params={p.name: p for p in params if p.location == "query"},
        body_schema=body_schema,
        body_required=bool(body and body.get("required")),
        responses=responses,
    )


class Spec:
    """The operations GitHub defines, and the checks made against them."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.operations: list[Operation] = [
            _operation(method, template, raw)
            for template, item in document["paths"].items()
            for method, raw in item.items()
            if isinstance(raw, dict) and "responses" in raw
        ]
        self._validators: dict[int, Draft4Validator] = {}

    # -- lookup --------------------------------------------------------

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation for ``method path`` (no API prefix) and its path parameters."""
        best: tuple[Operation, dict[str, str]] | None = None
        for op in self.operations:
            if op.method != method.upper():
                continue
            m = op.pattern.match(path)
            if m and (best is None or op.literal_weight > best[0].literal_weight):
                best = (op, m.groupdict())
        return best

    def path_known(self, path: str) -> bool:
        """Whether some method is defined on ``path`` (to tell 'wrong method' apart)."""
        return any(op.pattern.match(path) for op in self.operations)

    def validator(self, schema: JsonSchema) -> Draft4Validator:
        key = id(schema)
        found = self._validators.get(key)
        if found is None:
            found = self._validators[key] = Draft4Validator(schema, format_checker=FORMATS)
        return found

    # -- checks --------------------------------------------------------

    def check_request(
        self,
        method: str,
        path: str,
        query: Mapping[str, Sequence[str]] | str = "",
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        *,
        strict_fields: bool = True,
    ) -> list[str]:
        """Why GitHub would refuse this request (empty when it would accept it).

        ``path`` is relative to the API root (``/repos/o/r/issues``), ``query``
        a raw query string or parsed lists, ``body`` the raw bytes sent.
        With ``strict_fields``, top-level body fields the operation does not
        define are reported too: GitHub ignores them silently, which hides
        typos such as ``lables``.
        """
        where = f"{method.upper()} {path}"
        found = self.match(method, path)
        if found is None:
            reason = "no such method on this path" if self.path_known(path) else "unknown path"
            return [f"{where}: {reason}"]
        op, path_values = found
        problems = [
            *self._check_path(op, path_values),
            *self._check_query(
                op, parse_qs(query, keep_blank_values=True) if isinstance(query, str) else query
            ),
            *self._check_headers(headers or {}),
            *self._check_body(op, body, strict_fields=strict_fields),
        ]
        return [f"{where}: {p}" for p in problems]

    def check_response(self, op: Operation, status: int, body: Any) -> list[str]:
        """Why this answer does not match what GitHub documents for ``op`` and ``status``."""
        schema = op.responses.get(status)
        if schema is None:
            return []
        return [
            f"{op.route} -> {status}: {_where(err.absolute_path)}: {_short(err.message)}"
            for err in self.validator(schema).iter_errors(body)
        ]

    def _check_path(self, op: Operation, values: Mapping[str, str]) -> list[str]:
        problems = []
        for name, param in op.path_params.items():
            value = values.get(name, "")
            if not value:
                problems.append(f"path parameter {name!r} is missing")
            elif param.schema.get("type") == "integer" and not re.fullmatch(r"[0-9]+", value):
                problems.append(f"path parameter {name!r} must be an integer, got {value!r}")
        return problems

    def _check_query(self, op: Operation, query: Mapping[str, Sequence[str]]) -> list[str]:
        problems = []
        for name, param in op.query_params.items():
            if param.required and name not in query:
                problems.append(f"required query parameter {name!r} is missing")
        for name, values in query.items():
            known = op.query_params.get(name)
            if known is None:
                problems.append(f"query parameter {name!r} is not defined for this operation")
                continue
            for value in values:
                problems.extend(_check_scalar(name, value, known.schema))
        return problems

    def _check_headers(self, headers: Mapping[str, str]) -> list[str]:
        lowered = {k.lower(): v for k, v in headers.items()}
        version = lowered.get("x-github-api-version")
        if version is not None and version != "2022-11-28":
            return [f"X-GitHub-Api-Version {version!r} is not the version described (2022-11-28)"]
        return []

    def _check_body(self, op: Operation, raw: bytes | None, *, strict_fields: bool) -> list[str]:
        if not raw:
            if op.body_required:
                return ["a JSON body is required"]
            return []
        if op.body_schema is None:
            if op.method in ("GET", "DELETE"):
                return []
            return ["this operation takes no body"]
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            return [f"body is not JSON ({exc})"]
        schema = op.body_schema
        extensions = EXTENSION_FIELDS.get((op.method, op.template), {})
        problems = [
            f"body{_where(err.absolute_path, prefix='.')}: {_short(err.message)}"
            for err in self.validator(schema).iter_errors(body)
        ]
        if isinstance(body, dict) and "properties" in schema:
            for name, value in body.items():
                if name in schema["properties"]:
                    continue
                if name in extensions:
                    problems.extend(
                        f"body.{name}{_where(err.absolute_path, prefix='.')}: {_short(err.message)}"
                        for err in Draft4Validator(extensions[name]).iter_errors(value)
                    )
                elif strict_fields:
                    problems.append(f"body field {name!r} is not defined (GitHub ignores it)")
        return problems


def _check_scalar(name: str, value: str, schema: Mapping[str, Any]) -> list[str]:
    kind = schema.get("type")
    if kind == "integer" and not re.fullmatch(r"-?[0-9]+", value):
        return [f"query parameter {name!r} must be an integer, got {value!r}"]
    if kind == "boolean" and value not in ("true", "false"):
        return [f"query parameter {name!r} must be true or false, got {value!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"query parameter {name!r} must be one of {schema['enum']}, got {value!r}"]
    if schema.get("format") == "date-time" and not is_date_time(value):
        return [f"query parameter {name!r} must be an ISO 8601 date-time, got {value!r}"]
    return []


def _where(path: Sequence[Any], prefix: str = "") -> str:
    if not path:
        return "" if prefix else "(root)"
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    return text if prefix else text.lstrip(".")


def _short(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


@cache
def load_spec(path: str | None = None) -> Spec:
    """The description, parsed once per process (it is about 1 MB)."""
    where = Path(path or os.environ.get("GITHUB_FAKE_OPENAPI") or DEFAULT_SPEC)
    try:
        document = json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"GitHub's OpenAPI description is not at {where}; set GITHUB_FAKE_OPENAPI"
        ) from None
    return Spec(document)


def match(method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
    """The operation GitHub defines for ``method path``, with its path parameters."""
    return load_spec().match(method, path)


def check_request(
    method: str,
    path: str,
    query: Mapping[str, Sequence[str]] | str = "",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    *,
    strict_fields: bool = True,
) -> list[str]:
    """Why GitHub would refuse this request; see :meth:`Spec.check_request`."""
    return load_spec().check_request(
        method, path, query, headers, body, strict_fields=strict_fields
    )


def check_response(op: Operation, status: int, body: Any) -> list[str]:
    """Why this answer does not match GitHub's documentation; see :meth:`Spec.check_response`."""
    return load_spec().check_response(op, status, body)
