"""A program's files as the workers of a run must find them.

A program names its files relative to where ``run.py`` runs (``data/warehouse/customers``),
and the workers open them: a source's splits, an enrichment lookup, a filter's history
table, a model. A worker in another process or on another machine (Dask, Flink, Dataflow)
starts in its own directory, where a relative path is another file or none ("no .parquet
files at 'data/warehouse/customers'" after a Dask run had read its source). So, on the
driver, before the graph is built, every relative path the workers read becomes absolute.
Dataflow's workers never share the driver's disk: there, a local path is refused, naming
the component, before anything is submitted.

Only what the pipeline reads is touched: ``source``, ``enrich``, ``filters``,
``scoring.models`` and ``events``. Channels and journeys are read by the dispatcher, where
the program was written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from ceap.errors import ConfigError
from configs.schema import ProgramConfig


def pin_local_paths(program: ProgramConfig, shared_disk: bool = True) -> None:
    """Makes every relative path the workers read absolute, in place (against this
    process's working directory). With ``shared_disk=False`` (Dataflow), any path on this
    machine is a ConfigError listing each one; ``gs://``, ``s3://`` and other URLs pass."""
    problems = []
    for where, holder, key, group in _paths(program):
        value = _get(holder, key)
        if "://" in value:
            continue
        if not shared_disk:
            problems.append(f"{where}: {value!r}")
        elif not os.path.isabs(value):
            _set(holder, key, _absolute(value, group))
    if problems:
        raise ConfigError(
            f"program {program.program}: Dataflow workers cannot read files on this machine; "
            f"put them on gs:// (or s3://) and name them so: {'; '.join(problems)}"
        )


def _absolute(value: str, group: str) -> str:
    """A model is looked for in the working directory, then ``$CEAP_HOME``, then the source
    tree (``scorers.sklearn.resolve_model_path``): resolved here, where the driver's
    ``CEAP_HOME`` is the run's. Every other file is relative to the working directory."""
    if group == "scoring.models":
        from scorers.sklearn import resolve_model_path

        return os.path.abspath(resolve_model_path(value))
    return os.path.abspath(value)


def _paths(program: ProgramConfig) -> Iterator[tuple[str, Any, str, str]]:
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
            for found in _walk(item.options, f"{where} options", depth=0):
                yield (*found, group)


def _walk(node: Any, where: str, depth: int) -> Iterator[tuple[str, Any, str]]:
    """Each ``path`` text field under ``node`` (options models, dicts, lists), as
    (where, its holder, its key)."""
    if depth > 8:  # options nest a table or two deep (a filter's history: type, options)
        return
    if isinstance(node, BaseModel):
        items = [(k, getattr(node, k)) for k in type(node).model_fields]
    elif isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = [(str(i), v) for i, v in enumerate(node)]
    else:
        return
    for key, value in items:
        if key == "path" and isinstance(value, str) and value:
            yield f"{where}.path", node, key
        else:
            yield from _walk(value, f"{where}.{key}", depth + 1)


def _get(holder: Any, key: str) -> str:
    return holder[key] if isinstance(holder, dict) else getattr(holder, key)


def _set(holder: Any, key: str, value: str) -> None:
    if isinstance(holder, dict):
        holder[key] = value
    else:
        setattr(holder, key, value)
