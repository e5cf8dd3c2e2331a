"""Regenerate requirements/lock.txt from setup.py's ranges, every extra and the holds.

    python tools/lock.py            # after changing setup.py or requirements/holds.in
    python tools/lock.py --upgrade  # a deliberate upgrade: newest versions, then run the suite

The lock is universal (one file for Linux, macOS and Windows on Python 3.11), so the
README's install and CI resolve the same versions everywhere. Upgrading is a commit of
its own: regenerate, run `python -m pytest -q`, commit the lock with what moved.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
HOLDS = ROOT / "requirements" / "holds.in"


def compile_command(output: Path, *, holds: bool = True, upgrade: bool = False) -> list[str]:
    """The uv command that resolves setup.py (all extras) into a pinned lock at `output`."""
    cmd = ["uv", "pip", "compile", "setup.py", "--all-extras", "--universal"]
    cmd += ["--python-version", "3.11", "--quiet", "-o", str(output)]
    cmd += ["--custom-compile-command", "python tools/lock.py"]
    if holds:
        cmd += ["-c", str(HOLDS.relative_to(ROOT))]
    if upgrade:
        cmd.append("--upgrade")
    return cmd


def main(argv: list[str]) -> int:
    upgrade = "--upgrade" in argv
    done = subprocess.run(compile_command(LOCK, upgrade=upgrade), cwd=ROOT)
    if done.returncode == 0:
        print(f"wrote {LOCK.relative_to(ROOT)}; run `python -m pytest -q`, then commit it")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
