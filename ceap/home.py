"""Where CEAP keeps its embedded state and finds program configs."""

from __future__ import annotations

import os
from pathlib import Path


def ceap_home() -> Path:
    """``$CEAP_HOME`` (default ``./.ceap``): the embedded store, outbox and models."""
    return Path(os.environ.get("CEAP_HOME", ".ceap"))


def default_config_dir() -> Path:
    """``$CEAP_CONFIG_DIR``, else ``configs/`` here, else the configs shipped in the package."""
    if os.environ.get("CEAP_CONFIG_DIR"):
        return Path(os.environ["CEAP_CONFIG_DIR"])
    local = Path("configs")
    if local.is_dir() and any(local.glob("*.yaml")):
        return local
    import configs

    return Path(configs.__file__).parent


def sqlite_path() -> Path:
    return ceap_home() / "ceap.db"
