"""Request and response shapes of the Serving API, and the hand-validated parameters of
its hot route (same rules and 422 shape as the OpenAPI schema they are documented in)."""

from __future__ import annotations

import functools
import json
import re
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Path
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, field_validator

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$"  # customer and subject ids, at most 128 chars


NAME_PATTERN = r"^[a-z][a-z0-9_]*$"  # program and channel names (configs/schema.py's)


MAX_RESPONSE = 4 * 1024  # the `response` payload, as JSON


CustomerId = Annotated[str, Path(pattern=ID_PATTERN, min_length=1, max_length=128)]


IdField = Annotated[str, Field(pattern=ID_PATTERN, min_length=1, max_length=128)]


NameField = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]


SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "Bearer": {"type": "http", "scheme": "bearer"},
}


class CandidateOut(BaseModel):
    program: str
    subject_type: str
    subject_id: str
    action: str
    score: float | None
    model_id: str | None
    treatment: str | None
    context: dict[str, Any]
    created_at: str
    expires_at: str


class CandidatesOut(BaseModel):
    customer_id: str
    candidates: list[CandidateOut]


class ResponseIn(BaseModel):
    """The customer acted on a candidate (reviewed, rated, answered)."""

    model_config = ConfigDict(extra="forbid")
    program: NameField
    customer_id: IdField
    subject_id: IdField
    response: Any = None
    idempotency_key: IdField | None = None
    """The client's key for this response: sending it again (a retry) records nothing new.
    Without one, every POST is a response of its own (a customer may answer twice)."""

    @field_validator("response")
    @classmethod
    def _small(cls, value: Any) -> Any:
        try:  # NaN, Infinity, 1e999 and lone surrogates parse in Python, but strict JSON
            # readers of the store and the export refuse them
            size = len(json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8"))
        except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
            raise ValueError(
                "response must be plain JSON (no NaN, Infinity or lone surrogates)"
            ) from None
        if size > MAX_RESPONSE:
            raise ValueError(f"response must be at most {MAX_RESPONSE} bytes of JSON")
        return value


class ResponseOut(BaseModel):
    recorded: bool
    consumed: bool


@functools.cache
def channel_types() -> frozenset[str]:
    """The channel types this install knows (built-in and entry points), read once."""
    from ceap.plugins import channels

    return frozenset(channels.names())


class OptOutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: IdField
    program: NameField | None = None
    """null: every program."""
    channel: NameField | None = None
    """null: every channel. A channel type (``email``, ``sms`` ...): an opt-out of a type no
    channel has (``fax``, a typo) would suppress nothing, so it is refused (422)."""

    @field_validator("channel")
    @classmethod
    def _known_channel(cls, value: str | None) -> str | None:
        if value is not None and value not in channel_types():
            known = ", ".join(sorted(channel_types()))
            raise ValueError(f"unknown channel {value!r}; known: {known}")
        return value


class OptOutOut(OptOutIn):
    opted_out: bool = True


class OptOutsRemoved(BaseModel):
    customer_id: str
    removed: int


PARAMS = {  # the candidates route's parameters: (where, pattern, max length)
    "customer_id": ("path", re.compile(ID_PATTERN), 128),
    "program": ("query", re.compile(NAME_PATTERN), 64),
    "channel": ("query", re.compile(NAME_PATTERN), 64),
}


CANDIDATE_PARAMETERS = [
    {"name": name, "in": where, "required": where == "path",
     "schema": {"type": "string", "pattern": rx.pattern, "minLength": 1, "maxLength": size}}
    for name, (where, rx, size) in PARAMS.items()
] + [{"name": "limit", "in": "query", "required": False,
      "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}}]  # fmt: skip


def candidate_params(scope: dict) -> tuple[str, str | None, str | None, int]:
    """The hot route's parameters, validated by hand: FastAPI's per-parameter machinery
    cost more than the store read. Same rules as the schema above, same 422 shape."""
    query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
    values = {"customer_id": scope["path_params"]["customer_id"]} | {
        k: query.get(k) for k in ("program", "channel")
    }
    errors = []
    for name, (where, rx, size) in PARAMS.items():
        value = values[name]
        # fullmatch: with match, the pattern's `$` also matches before a trailing newline
        if value is not None and (len(value) > size or not rx.fullmatch(value)):
            errors.append({"type": "string_pattern_mismatch", "loc": (where, name),
                           "msg": f"must match {rx.pattern}, at most {size} characters",
                           "input": value[:200]})  # fmt: skip
    limit = query.get("limit", "20")
    if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= 100):
        errors.append({"type": "int_range", "loc": ("query", "limit"),
                       "msg": "must be an integer from 1 to 100", "input": limit[:200]})  # fmt: skip
    if errors:
        raise RequestValidationError(errors)
    return values["customer_id"], values["program"], values["channel"], int(limit)


def document_security(app: FastAPI) -> None:
    """The /v1 routes need a key: said in the OpenAPI schema (the check is in Observe, a
    cheap header compare rather than two dependencies solved per request)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        for path, operations in schema["paths"].items():
            if path.startswith("/v1/"):
                for op in operations.values():
                    op["security"] = [{"ApiKey": []}, {"Bearer": []}]
                    op["responses"]["401"] = {"description": "missing or invalid API key"}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def public_candidate(row: dict) -> dict:
    try:
        context = json.loads(row["context"]) if isinstance(row["context"], str) else row["context"]
    except ValueError:
        context = None
    return {
        "program": row["program"], "subject_type": row["subject_type"],
        "subject_id": row["subject_id"], "action": row["action"], "score": row["score"],
        "model_id": row["model_id"], "treatment": row["treatment"],
        "context": context if isinstance(context, dict) else {},
        "created_at": row["created_at"], "expires_at": row["expires_at"],
    }  # fmt: skip


def require_known(program: str | None, known: frozenset, loc: tuple[str, str]) -> None:
    """A program no config declares is a typo (``course_fedback``): recording it would
    suppress nothing and grow an export partition, so it is refused with 422."""
    if program is not None and program not in known:
        names = ", ".join(sorted(known)) or "none"
        raise RequestValidationError([{"type": "value_error", "loc": loc, "input": program,
                                       "msg": f"unknown program {program!r}; known: {names}"}])  # fmt: skip
