"""Built-ins are loaded once, whole, however many threads ask at once: two dispatchers
starting together saw "unknown connector type 'parquet'; known: " (nothing) while the first
was still importing them."""

from __future__ import annotations

import sys
import threading

from ceap.registry import Registry


class Thing:
    pass


REG: Registry = Registry("thing", f"{__name__}:Thing", "slow_thing_builtins")


def test_concurrent_first_lookups_all_see_the_builtins(tmp_path, monkeypatch):
    (tmp_path / "slow_thing_builtins.py").write_text(
        "import time\n"
        f"from {__name__} import REG, Thing\n"
        "time.sleep(0.3)  # a slow import: the others arrive meanwhile\n"
        "@REG.register('slow')\n"
        "class Slow(Thing):\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slow_thing_builtins", raising=False)
    start, found, errors = threading.Barrier(4), [], []

    def look() -> None:
        start.wait()
        try:
            found.append(REG.get("slow").__name__)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=look) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors and found == ["Slow"] * 4
