"""``snowflake``: the rows of a Snowflake query, as Arrow record batches.

A read is one split: one connection, one query, its result fetched with
``cursor.fetch_arrow_batches()`` (Arrow end to end, no per-row Python) and re-chunked to
``BATCH_ROWS`` rows, since Snowflake's result chunks are a few thousand rows each.

Values never go into the SQL text: the query has ``?`` placeholders and ``parameters``
are bound server-side (the connection is opened with ``paramstyle="qmark"``).

Secrets are never options (a program config is not a secret store): the password comes
from ``$SNOWFLAKE_PASSWORD``, or key-pair auth from the key file at
``$SNOWFLAKE_PRIVATE_KEY_PATH`` (passphrase, if any, in ``$SNOWFLAKE_PRIVATE_KEY_PASSPHRASE``).
Needs the optional extra: ``pip install 'ceap[snowflake]'``.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from ceap.errors import ConnectorError
from ceap.plugins import connectors
from connectors.base import BATCH_ROWS, Connector

PASSWORD_ENV = "SNOWFLAKE_PASSWORD"
PRIVATE_KEY_ENV = "SNOWFLAKE_PRIVATE_KEY_PATH"
PASSPHRASE_ENV = "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"


class SnowflakeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    query: str = Field(min_length=1)
    """The SQL to run; ``?`` marks where each of ``parameters`` goes."""
    parameters: list[bool | int | float | datetime | date | str | None] = Field(
        default_factory=list
    )
    """Values for the ``?`` placeholders, in order (bound by Snowflake, not formatted)."""
    account: str = Field(min_length=1)
    """Account identifier, e.g. ``myorg-myaccount``."""
    user: str = Field(min_length=1)
    warehouse: str | None = None
    database: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    """Schema the query's unqualified table names resolve in (``schema:`` in YAML)."""
    role: str | None = None
    lowercase_columns: bool = True
    """Snowflake upper-cases unquoted names (``CUSTOMER_ID``); lower-case them so that a
    program's ``fields:`` can say ``customer_id``. False keeps the names as returned."""


@connectors.register("snowflake")
class SnowflakeConnector(Connector):
    Options = SnowflakeOptions

    def read_split(
        self,
        split: Any,
        columns: Sequence[str] | None = None,
        *,
        text_columns: Collection[str] = (),  # typed by the warehouse: nothing to keep
    ) -> Iterator[pa.RecordBatch]:
        sf = _snowflake()
        try:
            connection = sf.connect(**self._connect_args())
            try:
                cursor = connection.cursor()
                cursor.execute(self.options.query, list(self.options.parameters) or None)
                tables = (self._shape(t, columns) for t in cursor.fetch_arrow_batches())
                yield from rechunk(tables)
            finally:
                connection.close()
        except sf.Error as exc:
            raise ConnectorError(f"snowflake ({self.options.account}): {exc}") from exc

    def _shape(self, table: pa.Table, columns: Sequence[str] | None) -> pa.Table:
        if self.options.lowercase_columns:
            table = table.rename_columns([name.lower() for name in table.column_names])
        if columns:
            table = table.select([c for c in columns if c in table.column_names])
        return table

    def _connect_args(self) -> dict[str, Any]:
        opts = self.options
        args: dict[str, Any] = {"account": opts.account, "user": opts.user, "paramstyle": "qmark"}
        for name, value in (
            ("warehouse", opts.warehouse),
            ("database", opts.database),
            ("schema", opts.schema_),
            ("role", opts.role),
        ):
            if value:
                args[name] = value
        key_path, password = os.environ.get(PRIVATE_KEY_ENV), os.environ.get(PASSWORD_ENV)
        if key_path:
            args.update(authenticator="SNOWFLAKE_JWT", private_key_file=key_path)
            if os.environ.get(PASSPHRASE_ENV):
                args["private_key_file_pwd"] = os.environ[PASSPHRASE_ENV]
        elif password:
            args["password"] = password
        else:
            raise ConnectorError(
                f"snowflake: no credentials for user {opts.user!r}; set ${PASSWORD_ENV} or "
                f"${PRIVATE_KEY_ENV} (secrets are never read from the program config)"
            )
        return args


def rechunk(
    chunks: Iterable[pa.Table | pa.RecordBatch], rows: int | None = None
) -> Iterator[pa.RecordBatch]:
    """Regroups a stream of small (or huge) tables into record batches of exactly ``rows``
    rows (default BATCH_ROWS; the last one shorter). Chunks whose integer widths differ are promoted to one type
    per output batch, as Snowflake may encode a NUMBER column narrower in some chunks."""
    rows = rows or BATCH_ROWS
    pending: list[pa.RecordBatch] = []
    count = 0
    for chunk in chunks:
        for batch in chunk.to_batches() if isinstance(chunk, pa.Table) else [chunk]:
            while batch.num_rows:
                take = min(rows - count, batch.num_rows)
                pending.append(batch.slice(0, take))
                batch = batch.slice(take)
                count += take
                if count == rows:
                    yield _combine(pending)
                    pending, count = [], 0
    if count:
        yield _combine(pending)


def _combine(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    tables = [pa.Table.from_batches([b]) for b in batches]
    table = pa.concat_tables(tables, promote_options="permissive").combine_chunks()
    return table.to_batches()[0]


def _snowflake() -> Any:
    try:
        import snowflake.connector as sf
    except ImportError as exc:
        raise ConnectorError(
            "the snowflake connector needs snowflake-connector-python: "
            "pip install 'ceap[snowflake]'"
        ) from exc
    return sf
