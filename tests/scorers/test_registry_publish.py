"""Publishing to the model registry when two trainings finish at the same moment: each
claims its own version (never the same number, never one model's file beside the other's
metadata) and ``latest`` ends on the newest. Local directories here; the same race against
S3 (moto's server) is in test_registry_s3.py."""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from scorers import registry


def race(monkeypatch, root: str, publishers: int = 2) -> list[dict]:
    """Runs ``publishers`` publishes whose first listing of versions all happen before any
    of them writes (what two `run.py train` processes finishing together do)."""
    barrier = threading.Barrier(publishers, timeout=10)
    listed = threading.local()
    real = registry.versions

    def versions(*args):
        found = real(*args)
        if not getattr(listed, "done", False):
            listed.done = True
            barrier.wait()
        return found

    monkeypatch.setattr(registry, "versions", versions)

    def publish(i: int) -> dict:
        model = f"model {i}".encode() * 100
        meta = {"sha256": hashlib.sha256(model).hexdigest(), "n": i}
        return registry.publish(root, "reviews", "lr", model, meta)

    with ThreadPoolExecutor(publishers) as pool:
        return list(pool.map(publish, range(publishers)))


def check(published: list[dict]) -> None:
    assert sorted(m["version"] for m in published) == list(range(1, len(published) + 1))
    for meta in published:
        blob = registry.read_bytes(meta["path"])
        assert hashlib.sha256(blob).hexdigest() == meta["sha256"]  # its own model file
        assert registry.metadata(meta["path"])["n"] == meta["n"]


def test_two_publishers_at_once_get_two_versions(tmp_path, monkeypatch):
    root = str(tmp_path / "models")
    published = race(monkeypatch, root, publishers=3)
    check(published)
    assert (tmp_path / "models/reviews/lr/latest").read_text() == "3\n"


def test_a_version_claimed_by_a_publisher_that_died_is_skipped(tmp_path):
    root = str(tmp_path / "models")
    first = registry.publish(root, "reviews", "lr", b"one", {})
    (Path(root) / "reviews/lr/2").mkdir()  # claimed, never written
    assert registry.versions(root, "reviews", "lr") == [1]
    second = registry.publish(root, "reviews", "lr", b"two", {})
    assert (first["version"], second["version"]) == (1, 3)
    assert registry.read_bytes(registry.locate(f"{root}/reviews/lr/latest")) == b"two"


def test_latest_names_the_newest_when_the_older_publisher_finishes_last(tmp_path, monkeypatch):
    """Version 1's publisher stalls while writing; version 2's publishes whole meanwhile."""
    root = str(tmp_path / "models")
    newer_done = threading.Event()
    real = registry.write_bytes

    def write_bytes(path: str, data: bytes) -> None:
        if path.endswith(f"1/{registry.MODEL_FILE}"):
            assert newer_done.wait(10)
        real(path, data)

    monkeypatch.setattr(registry, "write_bytes", write_bytes)
    with ThreadPoolExecutor(1) as pool:
        older = pool.submit(registry.publish, root, "reviews", "lr", b"one", {})
        deadline = time.monotonic() + 10
        while not (tmp_path / "models/reviews/lr/1").exists():  # until version 1 is claimed
            assert time.monotonic() < deadline, "version 1 was never claimed"
            time.sleep(0.01)
        newer = registry.publish(root, "reviews", "lr", b"two", {})
        newer_done.set()
        assert (older.result()["version"], newer["version"]) == (1, 2)
    assert (tmp_path / "models/reviews/lr/latest").read_text() == "2\n"


def test_a_pointer_written_from_a_stale_listing_is_put_back(tmp_path, monkeypatch):
    """Version 2's publisher listed before version 3's model existed, and writes ``latest``
    after version 3's publisher did: its re-check restores 3 (a CI run caught ``2``)."""
    root = str(tmp_path / "models")
    for blob in (b"one", b"two", b"three"):
        registry.publish(root, "reviews", "lr", blob, {})
    real, stale = registry.versions, iter([[1, 2]])
    monkeypatch.setattr(registry, "versions", lambda *a: next(stale, None) or real(*a))
    registry._point_latest(root, "reviews", "lr", 2)
    assert (tmp_path / "models/reviews/lr/latest").read_text() == "3\n"
