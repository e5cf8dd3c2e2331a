"""The dispatcher in-process: real mail to aiosmtpd on loopback, send-time guards, quiet
hours, shadow mode, retries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from channels.dispatcher import dispatch
from stores.base import iso
from stores.spec import open_store
from tests.channels.conftest import NOW, PROGRAM


def run(world, **kw):
    return dispatch(world.store_spec, world.config_dir, now=kw.pop("now", NOW), **kw)


def test_due_rows_are_mailed_once_and_marked_sent(world, smtp):
    keys = world.seed(20, channels=("email", "in_app"))
    world.seed(5, send_after=NOW + timedelta(hours=2), start=100)  # not due yet
    summary = run(world)
    assert summary.counts[("email", "sent")] == 20
    assert summary.counts[("in_app", "sent")] == 20
    assert sorted(smtp.keys()) == sorted(k for k in keys if world.outbox()[k]["channel"] == "email")
    mail = smtp.messages[0]
    assert mail["To"].endswith("@example.com") and mail["Message-ID"].endswith("@ceap>")
    assert "Kettle" in mail["Subject"]
    # RFC 5322: an origination date (absent before), parsed as an aware time close to now
    sent_at = parsedate_to_datetime(mail["Date"])
    assert sent_at.tzinfo is not None and abs(datetime.now(UTC) - sent_at) < timedelta(minutes=5)
    assert not mail.defects and all(not mail[h].defects for h in ("Date", "From", "To"))
    text = mail.get_body(("plain",)).get_content()  # links go through signed click URLs
    assert "/c/" in text and "utm_source=ceap" not in text
    rows = world.outbox()
    assert all(rows[k]["status"] == "sent" and rows[k]["sent_at"] == iso(NOW) for k in keys)
    assert all(rows[k]["attempts"] == 1 and rows[k]["lease_owner"] is None for k in keys)
    assert sum(r["status"] == "pending" for r in rows.values()) == 5
    # A second run finds nothing due: nothing is sent twice.
    again = run(world)
    assert again.total("sent") == 0 and len(smtp.messages) == 20
    status = open_store(world.store_spec).outbox_status("reviews", "email").to_pylist()
    assert {(r["status"], r["rows"]) for r in status} == {("sent", 20), ("pending", 5)}


def test_opt_out_made_after_the_pipeline_is_honoured_at_send_time(world, smtp):
    world.seed(4, channels=("email", "in_app"))
    store = open_store(world.store_spec)
    store.add_opt_out("C00000", None, None)  # everything
    store.add_opt_out("C00001", None, "email")  # email only
    store.add_opt_out("C00002", "other_program", None)  # another program: not this one
    store.close()
    summary = run(world)
    assert sorted(m["To"] for m in smtp.messages) == ["c00002@example.com", "c00003@example.com"]
    assert summary.counts[("email", "suppressed")] == 2
    assert summary.counts[("in_app", "suppressed")] == 1
    rows = {(r["customer_id"], r["channel"]): r for r in world.outbox().values()}
    assert rows[("C00000", "email")]["status"] == "suppressed"
    assert rows[("C00000", "email")]["reason"] == "opted out"
    assert rows[("C00001", "in_app")]["status"] == "sent"


def test_consumed_and_expired_candidates_are_not_sent(world, smtp):
    world.seed(1, start=0, status="consumed")
    world.seed(1, start=1, expires_at=iso(NOW - timedelta(minutes=1)))
    world.seed(1, start=2)
    run(world)
    assert [m["To"] for m in smtp.messages] == ["c00002@example.com"]
    reasons = {r["customer_id"]: r["reason"] for r in world.outbox().values()}
    assert reasons["C00000"] == "candidate consumed"
    assert reasons["C00001"] == "candidate expired"


def test_global_frequency_cap_across_programs(world, smtp, monkeypatch):
    monkeypatch.setenv("CEAP_FREQUENCY_CAP", "2/7d")
    text = world.config_dir.joinpath("reviews.yaml").read_text()
    for name in ("surveys", "ratings"):
        world.write_program(
            name=f"{name}.yaml", text=text.replace("program: reviews", f"program: {name}")
        )
    earlier = NOW - timedelta(days=3)
    world.seed(1, program="reviews", send_after=earlier - timedelta(hours=1))
    world.seed(1, program="surveys", send_after=earlier - timedelta(hours=1))
    run(world, now=earlier)  # both sent three days ago
    assert len(smtp.messages) == 2
    (third,) = world.seed(1, program="ratings")
    summary = run(world)
    assert summary.counts[("email", "suppressed")] == 1 and len(smtp.messages) == 2
    assert world.outbox()[third]["reason"] == "frequency cap: 2 per 7d"
    # Outside the window the customer may be contacted again.
    store = open_store(world.store_spec)
    store.connection.execute(
        "UPDATE outbox SET status = 'pending', reason = NULL WHERE idempotency_key = ?", (third,)
    )
    store.close()
    run(world, now=NOW + timedelta(days=5))
    assert len(smtp.messages) == 3


def test_two_rows_of_one_customer_in_one_batch_count_against_the_cap(world, smtp, monkeypatch):
    monkeypatch.setenv("CEAP_FREQUENCY_CAP", "1/1d")
    text = world.config_dir.joinpath("reviews.yaml").read_text()
    world.write_program(
        name="surveys.yaml", text=text.replace("program: reviews", "program: surveys")
    )
    world.seed(1, program="reviews")
    world.seed(1, program="surveys")
    summary = run(world)
    assert len(smtp.messages) == 1 and summary.counts[("email", "suppressed")] == 1


def test_each_program_counts_contacts_in_its_own_cap_window(world, smtp):
    """reviews caps email at 5 per 1d, invites at 1 per 30d: an email reviews sent three
    days ago is outside reviews' window but inside invites', whichever program the store
    was asked about last (the window used to be one per channel)."""
    customers = world.customers
    for name, cap in (("reviews", "{max: 5, window: 1d}"), ("invites", "{max: 1, window: 30d}")):
        world.write_program(
            name=f"{name}.yaml",
            text=PROGRAM.format(customers=customers, extra="")
            .replace("program: reviews", f"program: {name}")
            .replace(
                "options: {recipients: ",
                f"options: {{frequency_cap: {cap}, recipients: ",
            ),
        )
    earlier = NOW - timedelta(days=3)
    world.seed(2, program="reviews", send_after=earlier - timedelta(hours=1))
    run(world, now=earlier)
    assert len(smtp.messages) == 2
    (invite, _) = world.seed(2, program="invites")
    fresh = world.seed(1, program="reviews", start=5)
    summary = run(world)
    rows = world.outbox()
    assert rows[invite]["reason"] == "frequency cap: 1 per 30d"
    assert rows[fresh[0]]["status"] == "sent"
    assert summary.counts[("email", "suppressed")] == 2 and len(smtp.messages) == 3


def test_quiet_hours_defer_to_the_customers_morning(world, smtp, tmp_path):
    from tests.channels.conftest import customers_table

    customers_table(world.customers, 3, timezone="America/New_York")
    late = NOW.replace(hour=3)  # 22:00 the day before in New York
    world.seed(3, channels=("email", "in_app"), send_after=late - timedelta(hours=1))
    summary = run(world, now=late)
    assert summary.counts[("email", "deferred")] == 3 and not smtp.messages
    assert summary.counts[("in_app", "sent")] == 3  # in-app waits for the customer anyway
    email = [r for r in world.outbox().values() if r["channel"] == "email"]
    assert {r["status"] for r in email} == {"pending"}
    assert {r["send_after"] for r in email} == {"2024-03-01T13:00:00Z"}  # 08:00 EST
    assert run(world, now=late.replace(hour=12, minute=59)).total("sent") == 0  # not due yet
    run(world, now=late.replace(hour=13))
    assert len(smtp.messages) == 3


def test_shadow_mode_formats_and_records_but_sends_nothing(world, smtp):
    world.write_program(extra="    shadow: true".join(["", ""]))
    text = world.config_dir.joinpath("reviews.yaml").read_text()
    world.write_program(text=text.replace("  - type: in_app", "    shadow: true\n  - type: in_app"))
    world.seed(10, channels=("email",))
    world.seed(2, channels=("email",), start=50, shadow=True)  # shadow decided at enqueue
    world.seed(1, channels=("email",), start=2000)  # no such customer: no address
    summary = run(world)
    assert smtp.messages == []
    assert summary.counts[("email", "shadowed")] == 12
    assert summary.counts[("email", "failed")] == 1
    rows = world.outbox().values()
    shadowed = [r for r in rows if r["status"] == "shadowed"]
    assert len(shadowed) == 12 and all(r["sent_at"] is None for r in shadowed)
    assert all("@example.com" in r["reason"] for r in shadowed)  # what would have been sent
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed[0]["reason"] == "no email for the customer"


def test_templates_from_the_config_dir_win(world, smtp):
    (world.config_dir / "templates").mkdir()
    (world.config_dir / "templates" / "review.email.j2").write_text(
        "Subject: Custom {{ title }}\nHi {{ recipient.email }}, program {{ program }}."
    )
    world.seed(1)
    run(world)
    assert smtp.messages[0]["Subject"] == "Custom Kettle"
    body = smtp.messages[0].get_content().replace("\r\n", "\n")  # text only: no HTML twin
    assert body.startswith("Hi c00000@example.com, program reviews.\n\n--\nTo stop these emails:")


def test_server_down_is_retried_with_backoff_then_failed(world, monkeypatch):
    monkeypatch.setenv("CEAP_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CEAP_SMTP_PORT", "1")  # nothing listens
    monkeypatch.setattr("channels.dispatcher.MAX_ATTEMPTS", 2)
    (key,) = world.seed(1)
    summary = run(world)
    assert summary.counts[("email", "retry")] == 1
    row = world.outbox()[key]
    assert row["status"] == "pending" and row["attempts"] == 1 and row["next_attempt_at"]
    assert run(world).total("retry") == 0  # not before next_attempt_at
    store = open_store(world.store_spec)
    store.connection.execute("UPDATE outbox SET next_attempt_at = NULL")
    store.close()
    run(world)
    row = world.outbox()[key]
    assert row["status"] == "failed" and row["attempts"] == 2 and "SMTP" in row["reason"]


def test_shadow_rows_meet_the_frequency_cap_counting_shadow_contacts_only(world, smtp, monkeypatch):
    """Shadow is a rehearsal of the live channel: it applied no cap (92 customers got 4-12
    shadowed emails while live stopped at 3). Now it meets the same cap, against its own
    contacts; and what it shadowed does not use up the live channel's cap."""
    monkeypatch.setenv("CEAP_FREQUENCY_CAP", "3/7d")
    shadow = [k for i in range(5) for k in world.seed(1, shadow=True, subject=f"s{i}")]
    summary = run(world)
    rows = world.outbox()
    assert summary.counts[("email", "shadowed")] == 3
    assert sorted(rows[k]["status"] for k in shadow) == ["shadowed"] * 3 + ["suppressed"] * 2
    assert all(rows[k]["reason"].startswith("frequency cap: 3 per 7d") for k in shadow
               if rows[k]["status"] == "suppressed")  # fmt: skip
    live = [k for i in range(2) for k in world.seed(1, subject=f"live{i}")]
    run(world)
    rows = world.outbox()
    assert [rows[k]["status"] for k in live] == ["sent", "sent"] and len(smtp.messages) == 2
