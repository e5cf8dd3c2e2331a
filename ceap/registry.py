"""One registry mechanism for the four plugin kinds: connectors, filters, scorers, channels.

Built-ins register with a decorator; third-party packages add an entry point in the group
``ceap.<kind>s`` (e.g. ``ceap.scorers``) and need no change to this repo. A dotted path
(``my_pkg.module:MyScorer`` or ``my_pkg.module.MyScorer``) works too, as in Feast.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from ceap.errors import PluginError

T = TypeVar("T", bound=type)
_LOADING = threading.RLock()  # re-entrant: importing built-ins may resolve other plugins


class Registry(Generic[T]):
    """Maps short names to plugin classes of one kind, checked against the kind's base.

    Args:
      kind: ``connector``, ``filter``, ``scorer``, ``channel`` (or a new kind).
      base: the kind's base class, or its dotted path (``connectors.base:Connector``),
        imported on first use: ``ceap/`` is the ground floor and imports nothing above it.
      builtins: the module whose import registers the kind's built-ins, if any.
    """

    def __init__(self, kind: str, base: type | str, builtins: str | None = None) -> None:
        self.kind = kind
        self._base = base
        self._builtins = builtins
        self.group = f"ceap.{kind}s"
        self._classes: dict[str, type] = {}
        self._loaded_builtins = builtins is None

    @property
    def base(self) -> type:
        if isinstance(self._base, str):
            self._base = _import_dotted(self._base, self.kind)
        return self._base

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: ``@connectors.register("parquet")``."""

        def decorate(cls: T) -> T:
            existing = self._classes.get(name)
            if existing is not None and existing is not cls:
                raise PluginError(f"{self.kind} {name!r} is registered twice")
            self._check(name, cls)
            cls.type_name = name
            self._classes[name] = cls
            return cls

        return decorate

    def get(self, name: str) -> type:
        """Resolves a name: built-in, then entry point, then dotted path."""
        self._load_builtins()
        if name in self._classes:
            return self._classes[name]
        for ep in entry_points(group=self.group):
            if ep.name == name:
                try:
                    cls = ep.load()
                except Exception as exc:  # noqa: BLE001 - a broken plugin is a config error
                    raise PluginError(
                        f"{self.kind} {name!r}: entry point {ep.value!r} does not load: {exc}"
                    ) from exc
                self._check(name, cls)
                cls.type_name = name
                self._classes[name] = cls
                return cls
        if "." in name or ":" in name:
            cls = _import_dotted(name, self.kind)
            self._check(name, cls)
            cls.type_name = getattr(cls, "type_name", None) or name
            return cls
        raise PluginError(
            f"unknown {self.kind} type {name!r}; known: {', '.join(self.names())} "
            f"(third-party {self.kind}s register in the entry-point group {self.group!r})"
        )

    def names(self) -> list[str]:
        self._load_builtins()
        names = set(self._classes)
        names.update(ep.name for ep in entry_points(group=self.group))
        return sorted(names)

    def _check(self, name: str, cls: object) -> None:
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise PluginError(
                f"{self.kind} {name!r} resolves to {cls!r}, which is not a {self.base.__name__}"
            )

    def _load_builtins(self) -> None:
        """Imports the kind's built-ins once. The flag is set after the import, under a lock:
        set before, a second thread (two dispatchers, Beam's worker threads) would find it
        set while the first was still importing, and see no built-in at all."""
        if self._loaded_builtins:
            return
        with _LOADING:
            if not self._loaded_builtins:
                importlib.import_module(self._builtins)
                self._loaded_builtins = True


def _import_dotted(path: str, kind: str) -> type:
    module_name, _, attr = path.replace(":", ".").rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise PluginError(f"cannot import {kind} {path!r}: {exc}") from exc
