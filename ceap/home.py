"""Where CEAP keeps its embedded state and finds program configs."""

from __future__ import annotations

import os
from pathlib import Path


def ceap_home() -> Path:
    """``$CEAP_HOME`` (default ``./.ceap``): the embedded store, outbox and models."""
    return Path(os.environ.get("CEAP_HOME", ".ceap"))


def sqlite_path() -> Path:
    return ceap_home() / "ceap.db"
