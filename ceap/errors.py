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
