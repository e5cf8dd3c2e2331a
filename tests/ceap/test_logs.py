"""Structured logs (ceap/logs.py): one JSON object per line with program, stage and run id;
customer ids hashed at INFO and above, plain only at DEBUG; switched on by run.py with
``CEAP_LOG_FORMAT=json``."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from ceap import logs
from ceap.logs import JsonFormatter, bind, context, redact, use_json

ROOT = Path(__file__).resolve().parents[2]
CUSTOMER = "C00012345"


@pytest.fixture(autouse=True)
def unbound() -> Iterator[None]:
    """No run's bound fields leak in from, or out to, other tests."""
    saved = dict(logs._bound)
    logs._bound.clear()
    yield
    logs._bound.clear()
    logs._bound.update(saved)


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own, writing JSON lines to a buffer, at every level."""
    stream = io.StringIO()
    logger = logging.getLogger(f"ceap.test_logs.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(logging.StreamHandler(stream))
    use_json(logger)
    yield logger, stream
    logger.handlers.clear()


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_line_with_program_stage_and_run_id(logged):
    logger, stream = logged
    logger.info("queued %d rows", 3, extra=context(program="reviews", stage="outbox", run_id="r1", channel="email"))  # fmt: skip
    logger.warning("no context")

    first, second = lines(stream)
    assert {k: first[k] for k in ("level", "logger", "message", "program", "stage", "run_id", "channel")} == {
        "level": "INFO", "logger": logger.name, "message": "queued 3 rows", "program": "reviews",
        "stage": "outbox", "run_id": "r1", "channel": "email",
    }  # fmt: skip
    assert datetime.strptime(first["time"], "%Y-%m-%dT%H:%M:%S.%fZ")  # ISO-8601 UTC, ms
    assert (second["program"], second["stage"], second["run_id"]) == (None, None, None)
    assert "args" not in first and "msg" not in first  # LogRecord internals stay out


def test_customer_ids_are_hashed_at_info_and_above(logged):
    logger, stream = logged
    row = {"customer_id": CUSTOMER, "subject_id": "P1", "score": 0.9}
    for level in (logging.INFO, logging.WARNING, logging.ERROR, 15):  # 15: between DEBUG and INFO
        logger.log(level, "scored", extra=context(program="reviews", stage="score", customer_id=CUSTOMER,
                                                   customer_ids=[CUSTOMER, "C2"], row=row, rows=[row]))  # fmt: skip

    assert CUSTOMER not in stream.getvalue()
    token = redact(CUSTOMER)
    for record in lines(stream):
        assert record["customer_id"] == token
        assert record["customer_ids"] == [token, redact("C2")]
        assert record["row"] == {"customer_id": token, "subject_id": "P1", "score": 0.9}
        assert record["rows"] == [record["row"]]
    assert row["customer_id"] == CUSTOMER  # the caller's dict is not changed


def test_debug_records_keep_the_plain_id(logged):
    logger, stream = logged
    logger.debug("candidate", extra=context(program="reviews", stage="rank", customer_id=CUSTOMER))
    logger.info("candidate", extra=context(program="reviews", stage="rank", customer_id=CUSTOMER))

    debug, info = lines(stream)
    assert debug["customer_id"] == CUSTOMER
    assert info["customer_id"] == redact(CUSTOMER) != CUSTOMER


def test_the_token_is_stable_salted_and_not_the_id(monkeypatch):
    token = redact(CUSTOMER)
    assert token.startswith("c_") and len(token) == 18 and CUSTOMER not in token
    assert redact(CUSTOMER) == token and redact("C00012346") != token
    assert redact(None) is None
    monkeypatch.setenv("CEAP_LOG_SALT", "deployment-2")
    assert redact(CUSTOMER) != token


def test_exceptions_are_a_field_of_the_same_line(logged):
    logger, stream = logged
    try:
        raise ValueError("bad score")
    except ValueError:
        logger.exception("scoring failed", extra=context(program="reviews", stage="score"))

    (record,) = lines(stream)
    assert record["level"] == "ERROR" and record["stage"] == "score"
    assert "ValueError: bad score" in record["exception"]


def test_run_py_switches_to_json_with_ceap_log_format():
    """The opt-in as a user uses it: run.py's log set-up with ``CEAP_LOG_FORMAT=json``."""
    code = (
        "import logging, run; from ceap.logs import context; run._quiet_logs(); "
        "logging.getLogger('ceap.x').warning('sent', extra=context(program='reviews', "
        f"stage='dispatch', run_id='r9', customer_id='{CUSTOMER}'))"
    )
    env = {**os.environ, "CEAP_LOG_FORMAT": "json"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    ours = [json.loads(line) for line in proc.stderr.splitlines() if '"ceap.x"' in line]
    assert len(ours) == 1 and CUSTOMER not in proc.stderr
    assert {k: ours[0][k] for k in ("level", "program", "stage", "run_id", "customer_id")} == {
        "level": "WARNING", "program": "reviews", "stage": "dispatch", "run_id": "r9",
        "customer_id": redact(CUSTOMER),
    }  # fmt: skip


def test_formatter_alone_formats_a_record():
    record = logging.LogRecord("ceap", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    record.program = "reviews"
    out = json.loads(JsonFormatter().format(record))
    assert (out["message"], out["program"], out["stage"]) == ("hello world", "reviews", None)


def test_a_run_binds_its_program_and_run_id_for_every_line(logged):
    logger, stream = logged
    bind(program="reviews", run_id="r9")
    logger.warning("from a worker thread with no context")
    logger.warning("explicit", extra=context(program="music_feedback", stage="Score"))
    bind(program=None)
    logger.warning("after unbinding the program")
    plain, explicit, unbound_program = lines(stream)
    assert (plain["program"], plain["stage"], plain["run_id"]) == ("reviews", None, "r9")
    assert (explicit["program"], explicit["stage"], explicit["run_id"]) == (
        "music_feedback",
        "Score",
        "r9",
    )
    assert (unbound_program["program"], unbound_program["run_id"]) == (None, "r9")
    with pytest.raises(ValueError, match="customer_id"):
        bind(customer_id="C1")  # not a run field: never bound process-wide
