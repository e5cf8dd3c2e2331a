"""Typed errors: each says what the user did and what CEAP expected."""


class CeapError(Exception):
    """Base class of every error CEAP raises on purpose (shown without a traceback)."""


class ConfigError(CeapError):
    """A program config (or a component's options) is invalid; no pipeline starts."""


class PluginError(CeapError):
    """A plugin name or dotted path could not be resolved to the expected kind."""


class ConnectorError(CeapError):
    """A source could not be read (missing path, bad credentials, bad query)."""


class ModelError(CeapError):
    """A model could not be loaded or verified (hash mismatch, unsafe content)."""


class StoreError(CeapError):
    """A store could not be opened or reached (bad spec, missing credentials, no database)."""


# Exit codes shared by every command of run.py (README "Exit codes"): a scheduler tells
# "did not run" from "ran, but not as it should" from "called wrongly".
EXIT_OK = 0
EXIT_FAILED = 1
"""The command (or one of its programs) could not run: bad config, unreadable source, crash."""
EXIT_USAGE = 2
"""The command line is wrong: unknown command, flag or channel, a bad --now."""
EXIT_DEGRADED = 3
"""It ran to the end but did not do its job: a model's circuit breaker opened, or every row
that reached scoring failed. The run is recorded with status ``degraded``."""


def root_cause(exc: BaseException) -> BaseException:
    """What to tell the user about ``exc``: Beam wraps a worker's error in its own (and in
    its text); find ours (a CeapError) or the innermost cause."""
    seen, current = set(), exc
    while current is not None and id(current) not in seen:
        if isinstance(current, CeapError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    text = str(exc)
    for name in ("ConfigError", "ConnectorError", "ModelError", "PluginError"):
        if name + ":" in text:
            message = text.split(name + ":", 1)[1].strip().splitlines()[0]
            return CeapError(message.split(" [while running")[0])
    return exc
