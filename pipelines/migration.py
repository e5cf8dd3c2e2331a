"""Connector migrations (use case 10): a ``shadow: true`` source is read beside the primary
ones and compared with them, never written; the comparison is a migration report.

The report says whether the new connector returns the same data as the one it replaces:
row counts, key overlap on (customer, subject) and, for the keys both hold, which columns
differ and how often (first row per key; types compared as well). It is written to
``$CEAP_HOME/reports/migration-<program>-<run>.json`` and printed. Once it is clean, the
program moves traffic to the new connector by ``traffic:`` shares (by customer hash, in
``pipelines/batch.py``) up to 100%.

Both sides are reduced to a key and a 64-bit hash per column before they meet, so the
comparison holds ~8 bytes per cell, not the rows themselves.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa

from ceap.context import RunContext
from ceap.home import ceap_home
from connectors.base import ORIGIN_COLUMN

log = logging.getLogger(__name__)

SAMPLES = 5
"""Example keys listed per kind of difference."""
KEY = "_key"


def fingerprint(batch: pa.RecordBatch, keys: list[str]) -> pa.Table:
    """A batch as ``_key`` (the key columns joined as text) and one uint64 hash per column
    (nulls hash alike; values hash by content, so the same value read by two connectors as
    int64 and float64 differs in type, reported separately, not in every row)."""
    frame = batch.to_pandas()
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise KeyError(f"key column(s) {missing} not read")
    key = frame[keys[0]].astype(str)
    for k in keys[1:]:
        key = key + "\x1f" + frame[k].astype(str)
    out = {KEY: pa.array(key.to_numpy(dtype=object), pa.string())}
    for name in frame.columns:
        if name in keys or name == ORIGIN_COLUMN:  # where a row came from differs by design
            continue
        values = frame[name].map(_canonical)
        out[name] = pa.array(
            pd.util.hash_pandas_object(values, index=False).to_numpy(), pa.uint64()
        )
    return pa.table(out)


def _canonical(value):
    """Text a value hashes by: numbers compare by value (1 == 1.0), NaN like null."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "\0null"
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return repr(float(value))
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return repr(value)


def compare(primary: list[pa.Table], shadow: list[pa.Table], types: dict) -> dict:
    """The report body from both sides' fingerprints and their column types."""
    p = _concat(primary)
    s = _concat(shadow)
    p_first = p.drop_duplicates(KEY) if len(p) else p
    s_first = s.drop_duplicates(KEY) if len(s) else s
    p_keys, s_keys = set(p_first[KEY]), set(s_first[KEY])
    both = p_keys & s_keys
    p_cols = set(types.get("primary", {}))
    s_cols = set(types.get("shadow", {}))
    common = sorted((p_cols & s_cols) - {KEY})
    columns = []
    if both:
        joined = p_first[p_first[KEY].isin(both)].merge(
            s_first[s_first[KEY].isin(both)], on=KEY, suffixes=("", "__shadow")
        )
        for name in common:
            if name not in joined.columns or f"{name}__shadow" not in joined.columns:
                continue
            differs = joined[name].to_numpy() != joined[f"{name}__shadow"].to_numpy()
            if differs.any():
                columns.append(
                    {
                        "column": name,
                        "rows": int(differs.sum()),
                        "share": round(float(differs.mean()), 6),
                        "examples": _readable(sorted(joined.loc[differs, KEY])[:SAMPLES]),
                    }
                )
    type_diffs = [
        {"column": c, "primary": types["primary"][c], "shadow": types["shadow"][c]}
        for c in common
        if types["primary"][c] != types["shadow"][c]
    ]
    only_p, only_s = p_keys - s_keys, s_keys - p_keys
    report = {
        "rows": {"primary": len(p), "shadow": len(s), "difference": len(s) - len(p)},
        "keys": {
            "primary": len(p_keys),
            "shadow": len(s_keys),
            "both": len(both),
            "only_primary": len(only_p),
            "only_shadow": len(only_s),
            "overlap": round(len(both) / len(p_keys | s_keys), 6) if p_keys | s_keys else 1.0,
            "examples_only_primary": _readable(sorted(only_p)[:SAMPLES]),
            "examples_only_shadow": _readable(sorted(only_s)[:SAMPLES]),
        },
        "columns": {
            "only_primary": sorted(p_cols - s_cols),
            "only_shadow": sorted(s_cols - p_cols),
            "type_differences": type_diffs,
            "value_differences": columns,
        },
    }
    report["identical"] = (
        len(p) == len(s) and not only_p and not only_s and not columns and not type_diffs
        and not report["columns"]["only_primary"] and not report["columns"]["only_shadow"]
    )  # fmt: skip
    return report


def _concat(tables: list[pa.Table]) -> pd.DataFrame:
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return pd.DataFrame({KEY: pd.Series([], dtype=object)})
    return pa.concat_tables(tables, promote_options="default").to_pandas()


def _readable(keys: list[str]) -> list[list[str]]:
    return [k.split("\x1f") for k in keys]


def write_report(report: dict, program: str, run: str, home: Path | None = None) -> Path:
    folder = (home or ceap_home()) / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"migration-{program}-{run}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    return path


def render(report: dict) -> str:
    r, k, c = report["rows"], report["keys"], report["columns"]
    verdict = "identical" if report["identical"] else "DIFFERENT"
    lines = [
        f"migration [{report['program']}] shadow {report['shadow']} vs primary: {verdict}",
        f"  rows      primary {r['primary']:,}  shadow {r['shadow']:,}",
        f"  keys      both {k['both']:,}  only primary {k['only_primary']:,}  "
        f"only shadow {k['only_shadow']:,}  (overlap {k['overlap']:.2%})",
    ]
    for d in c["value_differences"]:
        lines.append(f"  column    {d['column']}: {d['rows']:,} keys differ ({d['share']:.2%})")
    for d in c["type_differences"]:
        lines.append(f"  type      {d['column']}: {d['primary']} -> {d['shadow']}")
    if c["only_primary"] or c["only_shadow"]:
        lines.append(
            f"  columns   only primary {c['only_primary']}  only shadow {c['only_shadow']}"
        )
    lines.append(f"  report    {report['path']}")
    return "\n".join(lines)


class _Types(beam.CombineFn):
    """Column -> Arrow type name over all batches (the first seen wins)."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, batch):
        for f in batch.schema:
            if f.name != ORIGIN_COLUMN:
                acc.setdefault(f.name, str(f.type))
        return acc

    def merge_accumulators(self, accs):
        out = {}
        for a in accs:
            for name, kind in a.items():
                out.setdefault(name, kind)
        return out

    def extract_output(self, acc):
        return acc


class CompareSources(beam.PTransform):
    """``(primary rows, shadow rows)`` (Arrow batches) -> the migration report (one dict),
    written under ``$CEAP_HOME/reports`` and printed as it is produced."""

    def __init__(self, program: str, shadow: str, keys: list[str], ctx: RunContext) -> None:
        super().__init__()
        self._program, self._shadow, self._keys, self._ctx = program, shadow, keys, ctx

    def expand(self, pcolls):
        primary, shadow = pcolls
        keys = self._keys

        def side(rows, name):
            prints = rows | f"{name}Fingerprint" >> beam.Map(fingerprint, keys)
            types = rows | f"{name}Types" >> beam.CombineGlobally(_Types())
            return beam.pvalue.AsList(prints), beam.pvalue.AsSingleton(types)

        p_prints, p_types = side(primary, "Primary")
        s_prints, s_types = side(shadow, "Shadow")
        program, shadow_name, run = self._program, self._shadow, self._ctx.run_id

        def report(_, pp, ss, pt, st):
            body = compare(pp, ss, {"primary": pt, "shadow": st})
            stamp = run or datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            full = {"program": program, "run_id": run or None, "shadow": shadow_name,
                    "keys_on": keys, **body}  # fmt: skip
            full["path"] = str(write_report(full, program, stamp))
            Path(full["path"]).write_text(json.dumps(full, indent=2, default=str))
            print(render(full), flush=True)
            log.info("migration report for %s written to %s", program, full["path"])
            return full

        return (
            primary.pipeline
            | "Start" >> beam.Create([None])
            | "Report" >> beam.Map(report, p_prints, s_prints, p_types, s_types)
        )
