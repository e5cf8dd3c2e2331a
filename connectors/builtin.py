"""Importing this module registers the built-in connectors."""

from connectors import csv, parquet  # noqa: F401
