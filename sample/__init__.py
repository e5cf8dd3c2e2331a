"""A seeded sample warehouse (customers, catalogues, facts, past contacts and outcomes) as
Parquet tables, for local runs, tests and benchmarks of every program."""

from sample.schema import TABLES
from sample.warehouse import generate_warehouse

__all__ = ["TABLES", "generate_warehouse"]
