"""Finding files for file-based connectors: a file, a directory, a glob, local or any
Beam filesystem URI (gs://, s3://, hdfs://)."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from apache_beam.io.filesystems import FileSystems

from ceap.errors import ConnectorError


def is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def list_files(path: str, suffixes: tuple[str, ...]) -> list[str]:
    """Every data file under ``path`` (sorted, hidden and ``_`` files skipped); raises
    ConnectorError naming the path when there are none."""
    if is_local(path):
        local = path.removeprefix("file://")
        if os.path.isdir(local):
            found = [  # by name, not suffix: ``.csv.gz`` is two suffixes
                str(p) for p in Path(local).rglob("*") if p.is_file() and p.name.endswith(suffixes)
            ]
        else:
            found = [p for p in glob.glob(local, recursive=True) if os.path.isfile(p)]
    else:
        pattern = path if any(c in path for c in "*?[") else path.rstrip("/") + "/**"
        try:
            result = FileSystems.match([pattern])[0]
        except Exception as exc:  # noqa: BLE001 - any filesystem error means "cannot list"
            raise ConnectorError(f"cannot list {path}: {exc}") from exc
        found = [
            m.path for m in result.metadata_list if m.path.endswith(suffixes) or pattern == path
        ]
    found = sorted(f for f in found if not Path(f).name.startswith((".", "_")))
    if not found:
        raise ConnectorError(f"no {'/'.join(suffixes)} files at {path!r}")
    return found


def open_file(path: str):
    """A binary file object for a local path or any Beam filesystem URI."""
    if is_local(path):
        return open(path.removeprefix("file://"), "rb")  # noqa: SIM115 - caller closes
    return FileSystems.open(path)
