"""Option fields that name a file the pipeline's workers open, marked so the driver can
find them (``pipelines/local_paths.py``) without guessing from a field's name: a plugin's
``path`` may as well be an HTTP route or a JSON path, and is then left alone."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic.fields import FieldInfo

MARK = "ceap_file"
DATA, MODEL = "data", "model"


def file_field(kind: str = DATA, **kwargs: Any) -> Any:
    """A pydantic field holding such a path. ``kind``: ``data`` (relative to the working
    directory) or ``model`` (looked for as ``scorers.sklearn.resolve_model_path`` does)."""
    return Field(json_schema_extra={MARK: kind}, **kwargs)


def file_kind(field: FieldInfo) -> str | None:
    """The ``kind`` a field was marked with, or None."""
    extra = field.json_schema_extra
    return extra.get(MARK) if isinstance(extra, dict) else None
