"""Importing this module registers the built-in scorers."""

from scorers import bedrock, column, sagemaker, sklearn  # noqa: F401
