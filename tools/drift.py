"""Drift check: would CEAP still pass its tests with the newest versions its ranges allow?

    python tools/drift.py              # resolve, install in a temporary venv, run the suite
    python tools/drift.py --no-tests   # only say which packages moved
    python tools/drift.py -- -x tests/connectors   # arguments after -- go to pytest

Resolves setup.py's ranges (every extra) afresh, without the lock and without the holds in
requirements/holds.in, installs that into a throwaway venv, runs the test suite there and
prints which packages moved against requirements/lock.txt and which tests broke. It is how
CEAP learns about the next botocore before its users do; it is not part of CI (its answer
changes with every release on PyPI). When it comes back green, `python tools/lock.py
--upgrade` and a commit make the upgrade deliberate.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from lock import LOCK, ROOT, compile_command

PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)(?:\s*;\s*(.+))?$")


def pins(path: Path) -> dict[str, str]:
    """name -> version of a compiled requirements file (one entry per name and marker)."""
    out = {}
    for line in path.read_text().splitlines():
        m = PIN.match(line.strip())
        if m and (m.group(3) is None or "3.11" in m.group(3) or "< '3.12'" in m.group(3)):
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return out


def moved(old: dict[str, str], new: dict[str, str]) -> list[str]:
    lines = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before != after:
            lines.append(f"  {name:32s} {before or '-':>14s} -> {after or '-'}")
    return lines


def failures(output: str) -> list[str]:
    """pytest's short summary lines (FAILED / ERROR)."""
    return [line for line in output.splitlines() if line.startswith(("FAILED ", "ERROR "))]


def main(argv: list[str]) -> int:
    pytest_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    with tempfile.TemporaryDirectory(prefix="ceap-drift-") as tmp:
        newest = Path(tmp) / "newest.txt"
        cmd = compile_command(newest, holds=False, upgrade=True)
        if subprocess.run(cmd, cwd=ROOT).returncode:
            print("drift: the ranges in setup.py no longer resolve (see uv's message above)")
            return 1
        changes = moved(pins(LOCK), pins(newest))
        print(f"drift: {len(changes)} package(s) move against {LOCK.relative_to(ROOT)}:")
        print("\n".join(changes) or "  none")
        if "--no-tests" in argv or not changes:
            return 0
        venv = Path(tmp) / "venv"
        python = venv / "bin" / "python"
        steps = [
            ["uv", "venv", "--quiet", "--python", "3.11", str(venv)],
            ["uv", "pip", "install", "--quiet", "--python", str(python), "-c", str(newest),
             "-e", ".[test]"],
        ]  # fmt: skip
        for step in steps:
            if subprocess.run(step, cwd=ROOT).returncode:
                print(f"drift: install failed: {' '.join(step)}")
                return 1
        print("drift: running the suite on the newest versions ...", flush=True)
        run = subprocess.run(
            [str(python), "-m", "pytest", "-q", *pytest_args],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        tail = run.stdout.strip().splitlines()[-1:] or ["(no output)"]
        broke = failures(run.stdout)
        print(f"drift: {tail[0]}")
        print("\n".join(f"  {line}" for line in broke) if broke else "  nothing broke")
        return 1 if run.returncode else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
