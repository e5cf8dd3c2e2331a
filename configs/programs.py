"""Finding program configs: the config directory, and a program by name in it."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from ceap.errors import ConfigError
from configs.schema import ProgramConfig, load_program, program_paths, read_yaml


def default_config_dir() -> Path:
    """``$CEAP_CONFIG_DIR``, else ``configs/`` here, else the configs shipped in the package."""
    if os.environ.get("CEAP_CONFIG_DIR"):
        return Path(os.environ["CEAP_CONFIG_DIR"])
    local = Path("configs")
    if local.is_dir() and any(local.glob("*.yaml")):
        return local
    return Path(__file__).parent


def find_program_path(name: str, config_dir: str | Path) -> Path:
    """``<dir>/<name>.yaml`` when it declares that program, else the file that does."""
    config_dir = Path(config_dir)
    direct = config_dir / f"{name}.yaml"
    if direct.exists():
        return direct
    unreadable = []
    for path in program_paths(config_dir):
        try:
            data = read_yaml(path.read_text())
        except yaml.YAMLError as exc:
            unreadable.append(f"{path.name}: {' '.join(str(exc).split())}")
            continue
        if isinstance(data, dict) and data.get("program") == name:
            return path
    known = ", ".join(p.stem for p in program_paths(config_dir)) or "none"
    message = f"no program {name!r} in {config_dir} (programs there: {known})"
    if unreadable:  # the program may be in one of them: say why they were skipped
        message += "; not valid YAML, so not searched: " + "; ".join(unreadable)
    raise ConfigError(message)


def declared_names(config_dir: str | Path) -> list[str]:
    """The program names the configs in ``config_dir`` declare (their ``program:`` key, else
    the file's stem), valid or not: a config that fails to load still names its program, so
    its data in the store is not "unknown"."""
    names = set()
    for path in program_paths(config_dir):
        try:
            data = read_yaml(path.read_text())
        except (yaml.YAMLError, OSError, ConfigError, RecursionError):
            data = None
        name = data.get("program") if isinstance(data, dict) else None
        names.add(name if isinstance(name, str) and name else path.stem)
    return sorted(names)


def load_by_name(name: str, config_dir: str | Path) -> ProgramConfig:
    return load_program(find_program_path(name, config_dir))
