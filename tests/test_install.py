"""The design card's dependencies are core: after the README's install, Beam's GCP
(BigQuery, GCS, Dataflow) and AWS (S3) IOs import, and importing them says nothing about
missing packages (Beam logs "apitools not found" when its GCP extra is absent)."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import logging
logging.basicConfig(level=logging.DEBUG, format="%(name)s %(message)s")
from apache_beam.io.gcp import bigquery, gcsio
from apache_beam.io.aws import s3io
from apache_beam.runners.dataflow import dataflow_runner
print("imported")
"""


def test_gcp_and_aws_ios_import_without_warnings():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "imported" in done.stdout
    said = done.stderr.lower()
    assert "apitools" not in said and "not installed" not in said and "not found" not in said
