"""Importing this module registers the built-in filters."""

from transforms.filters import expression, history, values  # noqa: F401
