"""A program's files as the workers of a run must find them.

A program names its files relative to where ``run.py`` runs (``data/warehouse/customers``),
and the workers open them: a source's splits, an enrichment lookup, a filter's history
table, a model. Which fields are such files, their options say (``ceap/file_fields.py``).

- Workers on this machine (in-process, a loopback Dask cluster, Flink's LOOPBACK) start in
  their own directory, where a relative path is another file or none ("no .parquet files
  at 'data/warehouse/customers'" after a Dask run had read its source): each relative path
  is made absolute on the driver, before the graph is built.
- Dataflow's workers never share this machine's disk: a data file on it (``file://``
  included) is refused, naming where it is. A model path is left as written when the
  workers run a custom image (``--sdk_container_image``, which may hold it, as the
  Dockerfile's ``/opt/ceap/models`` does), refused otherwise.
- Other runners' workers (Flink in containers, a remote Dask cluster) have their own disks
  and images: paths stay as written.

Only what the pipeline reads: ``source``, ``enrich``, ``filters``, ``scoring.models`` and
``events``. Channels and journeys are read by the dispatcher, where the program was written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from ceap.errors import ConfigError
from ceap.file_fields import MODEL, file_kind
from configs.schema import ProgramConfig
from connectors.files import is_local

SHARED, DATAFLOW, ELSEWHERE = "shared", "dataflow", "elsewhere"
"""Where a run's workers are (``pipelines.runners.worker_disk``)."""


def pin_local_paths(
    program: ProgramConfig, workers: str = SHARED, image: bool = False
) -> ProgramConfig:
    """The program with its workers' files as they must find them (a copy; see above).

    Args:
      workers: ``shared``, ``dataflow`` or ``elsewhere``.
      image: the workers run a custom container image (models may be in it).
    """
    if workers == ELSEWHERE:
        return program
    program = program.model_copy(deep=True)
    problems = []
    for where, holder, key, kind in _files(program):
        value = getattr(holder, key)
        if not is_local(value):
            continue
        if workers == DATAFLOW:
            if not (kind == MODEL and image):
                problems.append(f"{where}: {value!r}")
        elif not value.startswith("file://") and not os.path.isabs(value):
            setattr(holder, key, _absolute(value, kind))
    if problems:
        raise ConfigError(
            f"program {program.program}: Dataflow workers cannot read files on this machine; "
            f"put them on gs:// (or s3://) and name them so (a model may also be a path in "
            f"the --sdk_container_image): {'; '.join(problems)}"
        )
    return program


def _absolute(value: str, kind: str) -> str:
    """A model is looked for in the working directory, then ``$CEAP_HOME``, then the source
    tree (``scorers.sklearn.resolve_model_path``): resolved here, where the driver's
    ``CEAP_HOME`` is the run's. A data file is relative to the working directory."""
    if kind == MODEL:
        from scorers.sklearn import resolve_model_path

        return os.path.abspath(resolve_model_path(value))
    return os.path.abspath(value)


def _files(program: ProgramConfig) -> Iterator[tuple[str, BaseModel, str, str]]:
    """Each marked file field the pipeline reads: (where, its model, field name, kind)."""
    groups = [
        ("source", program.source), ("enrich", program.enrich), ("filters", program.filters),
        ("scoring.models", program.scoring.models),
        ("events", [program.events] if program.events is not None else []),
    ]  # fmt: skip
    for group, items in groups:
        for i, item in enumerate(items):
            where = group if group == "events" else f"{group}[{i}]"
            if getattr(item, "name", None):
                where += f" ({item.name})"
            yield from _walk(item.options, f"{where} options", depth=0)


def _walk(node: Any, where: str, depth: int) -> Iterator[tuple[str, BaseModel, str, str]]:
    if depth > 8:  # options nest a table or two deep (a filter's history: type, options)
        return
    if isinstance(node, BaseModel):
        for key, field in type(node).model_fields.items():
            value = getattr(node, key)
            kind = file_kind(field)
            if kind is not None and isinstance(value, str) and value:
                yield f"{where}.{key}", node, key, kind
            else:
                yield from _walk(value, f"{where}.{key}", depth + 1)
    elif isinstance(node, dict | list):
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            yield from _walk(value, f"{where}.{key}", depth + 1)
