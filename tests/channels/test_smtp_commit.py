"""The SMTP adapter's commit-before-the-final-dot protocol, against a real aiosmtpd server on
loopback: the row is recorded as sent right before the message becomes the server's, a row
whose lease was lost is abandoned unsent, and a message the server refuses after its data is
settled back to a retry or a failure."""

from __future__ import annotations

from channels.dispatcher import dispatch
from channels.email import EmailChannel
from stores.spec import open_store
from tests.channels.conftest import NOW
from tests.channels.test_adapters import prepared


def test_commit_is_called_before_the_server_has_the_message(smtp):
    adapter = EmailChannel()
    seen_at_commit: list[int] = []

    def commit(message) -> bool:
        seen_at_commit.append(len(smtp.messages))
        return True

    results = adapter.send([prepared(adapter, key="a" * 64), prepared(adapter, key="b" * 64)],
                           commit=commit)  # fmt: skip
    adapter.close()
    assert [r.ok for r in results] == [True, True]
    assert seen_at_commit == [0, 1]  # each commit came before its own message arrived
    assert smtp.keys() == ["a" * 64, "b" * 64]


def test_a_refused_commit_abandons_the_message_and_the_connection_recovers(smtp):
    adapter = EmailChannel()
    (lost,) = adapter.send([prepared(adapter, key="a" * 64)], commit=lambda m: False)
    (sent,) = adapter.send([prepared(adapter, key="b" * 64)], commit=lambda m: True)
    adapter.close()
    assert not lost.ok and "lease lost" in lost.error
    assert sent.ok
    assert smtp.keys() == ["b" * 64]  # the server dropped the unterminated message


def test_a_row_leased_by_someone_else_is_not_sent(world, smtp, monkeypatch):
    """Between the lease and the commit another dispatcher took the row (our lease ran out):
    the commit is refused and nothing goes out; the row stays the other one's."""
    (key,) = world.seed(1)
    real = EmailChannel.send

    def steal_then_send(self, messages, commit=None):
        store = open_store(world.store_spec)
        store.connection.execute("UPDATE outbox SET lease_owner = 'other', lease_until = ?",
                                 ("2999-01-01T00:00:00Z",))  # fmt: skip
        store.close()
        return real(self, messages, commit)

    monkeypatch.setattr(EmailChannel, "send", steal_then_send)
    summary = dispatch(world.store_spec, world.config_dir, now=NOW)
    row = world.outbox()[key]
    assert smtp.messages == []
    assert row["status"] == "pending" and row["lease_owner"] == "other" and row["attempts"] == 0
    assert summary.total("sent") == summary.total("retry") == 0


def test_refused_after_the_data_is_settled_back_to_failed(world, smtp):
    """The row was committed as sent before the dot; the server's 554 after it undoes that."""
    (key,) = world.seed(1)
    original = smtp.handle_DATA

    async def refuse(server, session, envelope):
        return "554 5.7.1 content rejected"

    smtp.handle_DATA = refuse
    try:
        summary = dispatch(world.store_spec, world.config_dir, now=NOW)
    finally:
        smtp.handle_DATA = original
    row = world.outbox()[key]
    assert summary.counts[("email", "failed")] == 1
    assert row["status"] == "failed" and row["sent_at"] is None and row["attempts"] == 1
    assert "554" in row["reason"] and row["lease_owner"] is None


def test_a_delivered_message_is_settled_confirmed(world, smtp):
    (key,) = world.seed(1)
    dispatch(world.store_spec, world.config_dir, now=NOW)
    row = world.outbox()[key]
    assert row["status"] == "sent" and row["attempts"] == 1 and row["sent_at"]
    assert row["reason"] is None and row["lease_owner"] is None  # not "unconfirmed"
