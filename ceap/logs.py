"""Structured logs: one JSON object per line, with the program, stage and run id of the record.

    CEAP_LOG_FORMAT=json python run.py --program reviews     # run.py reads it in _quiet_logs()

    log = logging.getLogger(__name__)
    log.info("queued", extra=context(program="reviews", stage="outbox", run_id=run_id,
                                     customer_id=cid))

Fields: ``time`` (ISO-8601 UTC), ``level``, ``logger``, ``message``, ``program``, ``stage``,
``run_id`` (null when unknown), plus any other ``extra=`` keys. Customer ids are personal
data: at INFO and above every ``customer_id`` field is written hashed (``redact()``), also
inside ``extra=`` dicts and lists (a logged row), and so is each id of a ``customer_ids``
list; only DEBUG records, which are for a developer's own machine, carry them in plain text.
Messages and exception texts are written as given, so code never formats a customer id into
one (pass it as ``customer_id``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

FIELDS = ("program", "stage", "run_id")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def redact(customer_id: str | None) -> str | None:
    """A stable, non-reversible token for a customer id (``c_`` + 16 hex of a salted SHA-256):
    the same customer gives the same token across lines, so logs can still be correlated.
    The salt is ``$CEAP_LOG_SALT`` (set one per deployment so tokens cannot be looked up)."""
    if customer_id is None:
        return None
    salt = os.environ.get("CEAP_LOG_SALT", "ceap")
    return "c_" + hashlib.sha256(f"{salt}:{customer_id}".encode()).hexdigest()[:16]


def _scrub(value: Any) -> Any:
    """``value`` with every ``customer_id`` / ``customer_ids`` entry of its dicts redacted."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "customer_id":
                out[key] = redact(None if item is None else str(item))
            elif key == "customer_ids" and isinstance(item, list | tuple | set):
                out[key] = [redact(None if i is None else str(i)) for i in item]
            else:
                out[key] = _scrub(item)
        return out
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


_bound: dict[str, Any] = {}


def context(**fields: Any) -> dict[str, Any]:
    """``extra=`` for a log call: the program/stage/run_id fields and any others."""
    return fields


def bind(**fields: Any) -> None:
    """Process-wide defaults for ``program``, ``stage`` and ``run_id``, for records that do
    not carry their own: a run binds its program and run id once, so every line of it (Beam
    worker threads included) can be traced to the run. ``None`` unbinds a field."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"bind() takes {FIELDS}, not {sorted(unknown)}")
    for name, value in fields.items():
        if value is None:
            _bound.pop(name, None)
        else:
            _bound[name] = value


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }  # fmt: skip
        for name in FIELDS:
            out[name] = getattr(record, name, None) or _bound.get(name)
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in out:
                out[name] = value
        if record.levelno > logging.DEBUG:
            out = _scrub(out)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def use_json(logger: logging.Logger | None = None) -> None:
    """Switches the handlers of ``logger`` (default: root) to JSON lines."""
    logger = logger or logging.getLogger()
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler())
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())
