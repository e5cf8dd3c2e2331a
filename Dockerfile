# The CEAP worker image for Dataflow, Flink and other portable runners: Beam's own Python
# SDK image at the exact Beam and Python versions requirements/lock.txt pins (checked by
# tests/test_worker_image.py; linted by hadolint in CI), with CEAP and its locked
# dependencies installed. Build, push, and run with --sdk_container_image (docs/runners.md).
FROM apache/beam_python3.11_sdk:2.77.0

WORKDIR /opt/ceap
# The lock first: dependency layers are rebuilt only when it changes, not on every commit.
COPY requirements/lock.txt requirements/lock.txt
COPY setup.py pyproject.toml README.md run.py ./
COPY ceap ceap
COPY configs configs
COPY connectors connectors
COPY scorers scorers
COPY channels channels
COPY stores stores
COPY transforms transforms
COPY pipelines pipelines
COPY serving serving
COPY reports reports
COPY sample sample
COPY models models
RUN pip install --no-cache-dir -c requirements/lock.txt .

ENV CEAP_CONFIG_DIR=/opt/ceap/configs
# Beam's entrypoint stays: the runner starts /opt/apache/beam/boot.
