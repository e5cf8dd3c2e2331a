"""Importing this module registers the built-in scorers."""

from scorers import column, sklearn  # noqa: F401
