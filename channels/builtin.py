"""Importing this module registers the built-in channels, one module per adapter."""

from channels import email, in_app, push, sms, voice, whatsapp  # noqa: F401 - registers them
