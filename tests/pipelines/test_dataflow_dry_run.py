"""Every CEAP graph built as a Dataflow job, offline, through the CLI a user types.

``run.py ... --runner DataflowRunner --project ceap-test-project --region us-central1
--temp_location gs://ceap-test-bucket/tmp --dry_run=True --no_auth`` makes Beam's Dataflow
runner build the whole job (graph, pickled DoFns, worker environment); CEAP's
``DataflowDryRunner`` (pipelines/runners.py) then describes it as a submission would and
writes it to ``--dataflow_job_file`` with the portable pipeline beside it. The tests read
those two files: the job's type, worker images, staged packages and ``sdkPipelineOptions``,
the pipeline's step names, and every string inside it, pickled DoFns included, for local
paths a worker elsewhere could not reach.

What the driver itself reaches while building: the program's sources are listed and their
Parquet footers read (splits, ``check_columns``), and the store is opened (resume position,
the ``runs`` row). So the programs read ``s3://`` on moto's server (``AWS_ENDPOINT_URL``, an
environment variable: nothing of it lands in the job) and write to DynamoDB on moto; a
``gs://`` source would need Google Cloud Storage at build time, which this machine cannot
reach. Kafka's read is a Java transform expanded at build time by an expansion service: a
stand-in service on loopback expands it into a placeholder in a Java environment, so the
rest of the Kafka graph is built as Dataflow would receive it.
"""

from __future__ import annotations

import base64
import bz2
import hashlib
import json
import pickletools
import re
import shutil
import signal
import sys
import tarfile
import tempfile
import typing
import uuid
import zlib
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2
from google.protobuf.message import Message

from configs.schema import load_program
from configs.yaml_reading import read_yaml  # YAML 1.2, as CEAP reads it: `on:` is a key

pytestmark = pytest.mark.integration  # moto's server on loopback

ROOT = Path(__file__).resolve().parents[2]
SEEDS = sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))
BUCKET = "ceap-test-bucket"
IMAGE = "us-central1-docker.pkg.dev/ceap-test-project/ceap/worker:test"
DATAFLOW = [
    "--runner", "DataflowRunner", "--project", "ceap-test-project", "--region", "us-central1",
    "--temp_location", f"gs://{BUCKET}/tmp", "--dry_run=True", "--no_auth",
]  # fmt: skip
CONTAINER = ["--sdk_container_image", IMAGE, "--sdk_location=container"]
CEAP_PACKAGES = {
    "ceap", "configs", "connectors", "scorers", "channels", "stores", "transforms",
    "pipelines", "serving", "reports", "sample", "tools", "bench", "tests", "run",
}  # fmt: skip
"""Top-level names of this repo: a pickled DoFn naming a module under one of them makes the
workers import it."""


# -- the world the driver sees: S3 and DynamoDB on moto -----------------------------------


@pytest.fixture(scope="session")
def warehouse(moto_endpoint, tmp_path_factory) -> str:
    """The sample warehouse (200 rows a table) and the seed models in ``s3://BUCKET/``."""
    import boto3

    from sample import generate_warehouse

    local = tmp_path_factory.mktemp("warehouse")
    generate_warehouse(local / "data" / "warehouse", rows=200, seed=1)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    files = [(p, p.relative_to(local)) for p in (local / "data").rglob("*") if p.is_file()]
    files += [(p, p.relative_to(ROOT)) for p in (ROOT / "models").rglob("*") if p.is_file()]
    for path, key in files:
        s3.upload_file(str(path), BUCKET, key.as_posix())
    return moto_endpoint


@pytest.fixture
def cli(warehouse, tmp_path, monkeypatch, capsys):
    """Runs ``run.py`` in this process from an empty directory, AWS on moto; returns
    (exit code, stdout, stderr)."""
    import run

    monkeypatch.setenv("AWS_ENDPOINT_URL", warehouse)
    monkeypatch.setenv("CEAP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CEAP_STORE", raising=False)
    monkeypatch.delenv("CEAP_CONFIG_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    # Beam builds the --setup_file sdist in a fresh temporary directory: keep it in this one.
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))

    def call(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = run.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield call
    for sig, handler in handlers.items():  # a streaming run installs its graceful stop
        signal.signal(sig, handler)


def store_spec() -> str:
    """A DynamoDB store as in production: a table prefix and a region, no endpoint (the
    driver reaches moto through ``AWS_ENDPOINT_URL``)."""
    return f"dynamodb://ceap_{uuid.uuid4().hex[:10]}_?region=us-east-1"


def on_s3(node):
    """The seed config with every local path (``data/...``, ``models/...``) moved to S3."""
    if isinstance(node, dict):
        return {k: on_s3(v) for k, v in node.items()}
    if isinstance(node, list):
        return [on_s3(v) for v in node]
    if isinstance(node, str) and node.startswith(("data/", "models/")):
        return f"s3://{BUCKET}/{node}"
    return node


def config_dir(tmp_path: Path, events: dict | None = None) -> Path:
    """Every seed program with its paths on S3; ``events`` replaces the type and options
    of each program's ``events:`` block (its delay and lateness stay)."""
    folder = tmp_path / "configs"
    folder.mkdir(exist_ok=True)
    for name in SEEDS:
        doc = on_s3(read_yaml((ROOT / "configs" / f"{name}.yaml").read_text()))
        if events is not None and doc.get("events"):
            doc["events"].update(events)
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


# -- reading what the dry run wrote -------------------------------------------------------


class Job(typing.NamedTuple):
    """The job description (``--dataflow_job_file``) and the pipeline it runs."""

    description: dict
    pipeline: beam_runner_api_pb2.Pipeline

    @classmethod
    def read(cls, job_file: Path) -> Job:
        pipeline = beam_runner_api_pb2.Pipeline.FromString(
            job_file.with_suffix(".pipeline.pb").read_bytes()
        )
        return cls(json.loads(job_file.read_text()), pipeline)

    @property
    def options(self) -> dict:
        return self.description["environment"]["sdkPipelineOptions"]["options"]

    @property
    def pool(self) -> dict:
        (pool,) = self.description["environment"]["workerPools"]
        return pool

    @property
    def steps(self) -> set[str]:
        return {t.unique_name for t in self.pipeline.components.transforms.values()}

    def images(self) -> dict[str, str]:
        """The container image each transform's environment names, by step name."""
        envs = self.pipeline.components.environments
        return {
            t.unique_name: beam_runner_api_pb2.DockerPayload.FromString(
                envs[t.environment_id].payload
            ).container_image
            for t in self.pipeline.components.transforms.values()
            if t.environment_id
        }


_B64 = re.compile(rb"[A-Za-z0-9+/]{40,}={0,2}")


def _fields(message: Message) -> Iterator[bytes | str]:
    """Every bytes and string field of a proto, at any depth."""
    for field, value in message.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            values = list(value.values())
        elif field.label == field.LABEL_REPEATED:
            values = list(value)
        else:
            values = [value]
        for v in values:
            if isinstance(v, Message):
                yield from _fields(v)
            elif isinstance(v, bytes | str):
                yield v


def _unpacked(data: bytes, depth: int = 0) -> Iterator[bytes]:
    """Every pickle inside ``data``: Beam stores a DoFn as base64 of its compressed pickle,
    inside a serialized payload proto, itself a bytes field."""
    if depth == 3:
        return
    for run in _B64.finditer(data):
        try:
            raw = base64.b64decode(run.group(), validate=True)
        except ValueError:
            continue
        for decompress in (zlib.decompress, bz2.decompress):
            try:
                inner = decompress(raw)
            except (zlib.error, OSError, ValueError):
                continue
            yield inner
            yield from _unpacked(inner, depth + 1)
            break


def pickles(pipeline: beam_runner_api_pb2.Pipeline) -> list[bytes]:
    return [x for v in _fields(pipeline) if isinstance(v, bytes) for x in _unpacked(v)]


def _pickled_strings(data: bytes, coded: bool = True) -> Iterator[str]:
    """The string constants of a pickle: module and attribute names, and the values of the
    objects pickled (a program's config, a run's context). With ``coded``, also what its
    bytes constants hold as values encoded by a coder (``Create``'s: a source's splits),
    each string after a length byte: their printable runs, with and without their first
    character."""
    try:
        for _, arg, _ in pickletools.genops(data):
            if isinstance(arg, str):
                yield arg
            elif isinstance(arg, bytes) and coded:
                for run in re.findall(rb"[\x21-\x7e]{6,}", arg):
                    yield from (run.decode(), run[1:].decode())
    except (ValueError, IndexError, EOFError, KeyError):
        return  # the rest is not a pickle


def _json_strings(node) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _json_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _json_strings(value)
    elif isinstance(node, str):
        yield node


def strings(job: Job) -> set[str]:
    """Every string the job holds: the pipeline's, those pickled inside it (DoFns and their
    arguments), and the description's, its options without Beam's own defaults (which are
    not the run's: ``bootstrap_servers: localhost:9092``)."""
    found = {v for v in _fields(job.pipeline) if isinstance(v, str)}
    found |= {s for data in pickles(job.pipeline) for s in _pickled_strings(data)}
    defaults = PipelineOptions([]).get_all_options(retain_unknown_options=True)
    description = json.loads(json.dumps(job.description))
    options = description["environment"]["sdkPipelineOptions"]["options"]
    for name in [k for k, v in options.items() if defaults.get(k) == v and k != "store"]:
        del options[name]
    return found | set(_json_strings(description))


def local_paths(job: Job, tmp_path: Path, allowed: set[str] = frozenset()) -> list[str]:
    """What a worker elsewhere cannot reach, as baked into the job: paths in this test's
    directory (configs, CEAP_HOME, the working directory), the source tree or the venv
    (except the file name of code pickled by value: a lambda keeps its ``co_filename``,
    read only by tracebacks), relative seed paths, SQLite and loopback endpoints. Every
    artifact the workers fetch must be staged on GCS.

    ``allowed``: strings expected where they are (the config dir on the run context, read
    on the driver only, by ``check_templates``; paths a user passed as flags, as options)."""
    here = (str(tmp_path), str(ROOT), sys.prefix)

    def local(text: str) -> bool:
        if text in allowed:
            return False
        if text.startswith(here):
            return not (text.endswith(".py") and not text.startswith(str(tmp_path)))
        return text.startswith(("data/", "models/", "sqlite", "file:")) or bool(
            re.search(r"\b(127\.0\.0\.1|localhost)\b", text)
        )

    found = sorted(text for text in strings(job) if local(text))
    for env in job.pipeline.components.environments.values():
        for artifact in env.dependencies:
            url = beam_runner_api_pb2.ArtifactUrlPayload.FromString(artifact.type_payload).url
            if artifact.type_urn != "beam:artifact:type:url:v1" or not url.startswith("gs://"):
                found.append(f"artifact {artifact.type_urn} {artifact.type_payload!r}")
    return found


def allowed_paths(configs: Path, *flags: str) -> set[str]:
    return {str(configs.resolve()), *flags}


def referenced_modules(job: Job) -> set[str]:
    """The CEAP modules the pickled DoFns name (imported on the worker when unpickled)."""
    return {
        text
        for data in pickles(job.pipeline)
        for text in _pickled_strings(data, coded=False)
        if re.fullmatch(r"[A-Za-z_]\w*(\.\w+)*", text) and text.split(".")[0] in CEAP_PACKAGES
    }


def expected_batch_steps(name: str, configs: Path) -> set[str]:
    program = load_program(configs / f"{name}.yaml")
    steps = {"ToCandidates", "Score", "Rank", "Store/Upsert", "DeadLetters", "ScoreDeadLetters"}
    steps |= {f"Read[{s.name or f'{i}:{s.type}'}]" for i, s in enumerate(program.source)}
    steps |= {f"Enrich/Enrich[{i}:{e.key}]" for i, e in enumerate(program.enrich)}
    return steps


def filter_steps(name: str, configs: Path, steps: set[str]) -> dict[str, list[str]]:
    """Each of the program's filters with the steps that run it (one each, early or late)."""
    labels = load_program(configs / f"{name}.yaml").filter_labels()
    return {
        label: [s for s in steps if re.fullmatch(rf"(Prefilter|Filters)/Filter\[{re.escape(label)}\]", s)]
        for label in labels
    }  # fmt: skip


# -- batch --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("program", SEEDS)
def test_each_seed_program_builds_a_dataflow_batch_job(program, cli, tmp_path):
    """The seed program, its paths moved to S3, as a Dataflow batch job on a custom
    container: every stage is a named step, the workers run the image given, and nothing
    local is baked in."""
    configs = config_dir(tmp_path)
    job_file = tmp_path / "job.json"
    store = store_spec()
    code, out, err = cli(
        "--program", program, "--config-dir", str(configs), "--store", store,
        *DATAFLOW, *CONTAINER, "--dataflow_job_file", str(job_file),
    )  # fmt: skip
    assert code == 0, err
    assert "dry run: Dataflow job" in err and "not submitted" in err
    assert f"funnel [{program}]" in out

    job = Job.read(job_file)
    assert job.description["type"] == "JOB_TYPE_BATCH"
    assert expected_batch_steps(program, configs) <= job.steps
    missing = {k: v for k, v in filter_steps(program, configs, job.steps).items() if len(v) != 1}
    assert not missing, f"filters without exactly one step: {missing}"
    # The workers run the image given, with nothing staged to install (CEAP is in the image).
    assert job.options["sdk_container_image"] == IMAGE
    assert job.pool["workerHarnessContainerImage"] == IMAGE
    assert set(job.images().values()) == {IMAGE}
    assert "workflow.tar.gz" not in {p["name"] for p in job.pool.get("packages", [])}
    assert job.options["runner"] == "DataflowRunner"
    assert (job.options["store"], job.options["mode"]) == (store, "batch")
    # The workers write to the store the driver was given.
    assert any(store.encode() in text for text in pickles(job.pipeline))
    assert local_paths(job, tmp_path, allowed_paths(configs, str(job_file))) == []


@pytest.mark.slow
def test_a_dry_run_is_recorded_as_one_and_files_on_this_machine_are_refused(cli, tmp_path):
    """A dry run's ``runs`` row says ``dry_run`` (its empty funnel is not a run that found
    nothing: the report skips it). The seed config as shipped names its data relatively, on
    this machine: refused before anything is built, each path named."""
    from stores.spec import open_store

    store = store_spec()
    code, _, err = cli("--program", "reviews", "--config-dir", str(config_dir(tmp_path)),
                       "--store", store, *DATAFLOW, *CONTAINER)  # fmt: skip
    assert code == 0, err
    assert [r["status"] for r in open_store(store).table("runs").to_pylist()] == ["dry_run"]

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    shutil.copy(ROOT / "configs" / "reviews.yaml", shipped / "reviews.yaml")
    (tmp_path / "data" / "warehouse").mkdir(parents=True)  # no sample generated for it
    code, _, err = cli("--program", "reviews", "--config-dir", str(shipped), "--store", store,
                       *DATAFLOW, *CONTAINER)  # fmt: skip
    assert code == 1 and "Dataflow workers cannot read files on this machine" in err
    assert "source[0] options.path: 'data/warehouse/deliveries'" in err
    assert "scoring.models" not in err  # a path in the worker image (--sdk_container_image)


@pytest.mark.slow
def test_a_setup_file_job_ships_the_sdist_with_every_module_it_pickles(cli, tmp_path):
    """``--setup_file``: Beam builds the sdist the workers pip-install, and the job stages it
    (workflow.tar.gz, that very file by its sha256) on Beam's own worker image. Every CEAP
    module the pickled DoFns name is in it, so the workers can unpickle them."""
    src = tmp_path / "src"  # Beam runs `setup.py sdist` where setup.py is: not in the repo
    shutil.copytree(
        ROOT, src,
        ignore=shutil.ignore_patterns(".git", ".ceap", "data", "build", "*.egg-info",
                                      "__pycache__", "tests", "bench", "models", ".venv"),
    )  # fmt: skip
    configs = config_dir(tmp_path)
    job_file = tmp_path / "job.json"
    setup = str(src / "setup.py")
    code, _, err = cli(
        "--program", "reviews", "--config-dir", str(configs), "--store", store_spec(),
        *DATAFLOW, "--setup_file", setup, "--dataflow_job_file", str(job_file),
    )  # fmt: skip
    assert code == 0, err
    job = Job.read(job_file)
    assert job.options["setup_file"] == setup
    image = f"beam_python{sys.version_info.major}.{sys.version_info.minor}_sdk"
    assert image in job.pool["workerHarnessContainerImage"]
    (package,) = [p for p in job.pool["packages"] if p["name"] == "workflow.tar.gz"]
    assert package["location"].startswith(f"storage.googleapis.com/{BUCKET}/tmp/")

    (sdist,) = (tmp_path / "tmp").glob("*/ceap-*.tar.gz")
    (artifact,) = [
        beam_runner_api_pb2.ArtifactUrlPayload.FromString(d.type_payload)
        for env in job.pipeline.components.environments.values()
        for d in env.dependencies
        if d.type_payload and b"workflow.tar.gz" in d.type_payload
    ]
    assert artifact.sha256 == hashlib.sha256(sdist.read_bytes()).hexdigest()
    with tarfile.open(sdist) as archive:
        files = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    modules = referenced_modules(job)
    assert {"transforms.scoring", "scorers.sklearn", "connectors.parquet"} <= modules
    unshipped = [
        m for m in modules
        if not {f"{m.replace('.', '/')}.py", f"{m.replace('.', '/')}/__init__.py"} & files
    ]  # fmt: skip
    assert unshipped == []
    assert local_paths(job, tmp_path, allowed_paths(configs, str(job_file), setup)) == []


@pytest.mark.slow
def test_every_program_at_once_builds_one_job_each(cli, tmp_path):
    """``--program all``: one job per program, each built and none submitted."""
    configs = config_dir(tmp_path)
    code, out, err = cli(
        "--program", "all", "--config-dir", str(configs), "--store", store_spec(),
        *DATAFLOW, *CONTAINER,
    )  # fmt: skip
    assert code == 0, err
    jobs = re.findall(r"dry run: Dataflow job (\S+) built", err)
    assert len(set(jobs)) == len(SEEDS)
    assert all(f"funnel [{name}]" in out for name in SEEDS)


# -- streaming ----------------------------------------------------------------------------


class _KafkaRecord(typing.NamedTuple):
    """What Beam's Java KafkaIO returns with metadata (the fields CEAP reads, and more)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


JAVA_IMAGE = "apache/beam_java17_sdk:2.77.0"


@pytest.fixture
def kafka_expansion_service() -> Iterator[str]:
    """A Beam expansion service on loopback that expands ``ReadFromKafka`` (a Java
    transform; Beam's real service is a jar this machine cannot download) into a placeholder
    in a Java SDK environment, with KafkaIO's output schema."""
    import apache_beam as beam
    import grpc
    from apache_beam import coders
    from apache_beam.io.kafka import ReadFromKafka
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.portability.api import beam_expansion_api_pb2_grpc
    from apache_beam.runners.portability.expansion_service import ExpansionServiceServicer
    from apache_beam.transforms.ptransform import PTransform

    class ReadKafkaPlaceholder(beam.PTransform):
        def expand(self, pbegin):
            return (
                pbegin
                | "Impulse" >> beam.Impulse()
                | "Records" >> beam.FlatMap(lambda _: []).with_output_types(_KafkaRecord)
            )

    coders.registry.register_coder(_KafkaRecord, coders.RowCoder)
    urn = ReadFromKafka.URN_WITH_METADATA
    PTransform.register_urn(urn, None, lambda proto, payload, context: ReadKafkaPlaceholder())
    java = PipelineOptions(environment_type="DOCKER", environment_config=JAVA_IMAGE)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    beam_expansion_api_pb2_grpc.add_ExpansionServiceServicer_to_server(
        ExpansionServiceServicer(java), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)
    PTransform._known_urns.pop(urn, None)


def events_for(kind: str, request: pytest.FixtureRequest) -> tuple[dict, set[str]]:
    """The ``events:`` source of each kind, and what may stay in the job from it."""
    if kind == "pubsub":
        sub = "projects/ceap-test-project/subscriptions/ceap-video-events"
        return {
            "type": "pubsub",
            "options": {"subscription": sub, "id_attribute": "event_id"},
        }, set()
    if kind == "kinesis":
        return {
            "type": "kinesis",
            "options": {"stream": "ceap-video-events", "region": "us-east-1"},
        }, set()
    address = request.getfixturevalue("kafka_expansion_service")
    options = {
        "bootstrap_servers": "kafka-1.internal:9092", "topics": ["video-events"],
        "consumer_config": {"group.id": "ceap-video"}, "expansion_service": address,
    }  # fmt: skip
    return {"type": "kafka", "options": options}, {address}  # used at build time only


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pubsub", "kafka", "kinesis"])
def test_streaming_builds_a_dataflow_streaming_job_on_dynamodb(kind, cli, tmp_path, request):
    """``--mode streaming`` from each remote events source, the ledger and checkpoints in
    DynamoDB: a streaming job whose source step feeds the same candidate graph, with the
    per-event outcome sinks. Kafka's read runs in the Java environment, the rest in CEAP's."""
    events, expected = events_for(kind, request)
    configs = config_dir(tmp_path, events)
    job_file = tmp_path / "job.json"
    store = store_spec()
    code, out, err = cli(
        "--program", "video_ratings", "--mode", "streaming", "--config-dir", str(configs),
        "--store", store, *DATAFLOW, *CONTAINER, "--dataflow_job_file", str(job_file),
    )  # fmt: skip
    assert code == 0, err
    job = Job.read(job_file)
    assert job.description["type"] == "JOB_TYPE_STREAMING"
    assert job.options["streaming"] is True
    assert (job.options["store"], job.options["mode"]) == (store, "streaming")
    steps = {f"ReadEvents[{kind}]", "ToCandidates", "DedupEvents", "Score", "Rank"}
    steps |= {"Store/Upsert", "Outcomes[0]/Write", "DeadLetters"}
    assert steps <= job.steps
    assert any(re.fullmatch(r"Filters/Filter\[.+\]", s) for s in job.steps)
    read_step = f"ReadEvents[{kind}]/Read"
    images = job.images()
    in_read = {step for step in images if step == read_step or step.startswith(read_step + "/")}
    read = {images[step] for step in in_read}
    rest = {image for step, image in images.items() if step not in in_read}
    assert rest == {IMAGE}
    if kind == "kafka":  # KafkaIO runs in the Java SDK's container, CEAP in its own
        assert read == {f"gcr.io/cloud-dataflow/v1beta3/{JAVA_IMAGE.split('/')[1]}"}
        harness = {i["containerImage"] for i in job.pool["sdkHarnessContainerImages"]}
        assert harness == read | {IMAGE}
    if kind == "pubsub":  # Dataflow's own Pub/Sub source, dropping redeliveries by id
        (native,) = [
            t for t in job.pipeline.components.transforms.values()
            if t.unique_name == read_step + "/Read"
        ]  # fmt: skip
        assert native.spec.urn == "beam:transform:pubsub_read:v1"
        payload = beam_runner_api_pb2.PubSubReadPayload.FromString(native.spec.payload)
        assert (payload.subscription, payload.id_attribute) == (
            events["options"]["subscription"],
            "event_id",
        )
    assert any(store.encode() in text for text in pickles(job.pipeline))
    assert local_paths(job, tmp_path, allowed_paths(configs, str(job_file)) | expected) == []


# -- export -------------------------------------------------------------------------------


@pytest.mark.slow
def test_export_builds_a_dataflow_batch_job(cli, tmp_path):
    """``run.py export`` to gs://: the day's tables read from DynamoDB on the workers,
    written and committed under the output, nothing local."""
    job_file = tmp_path / "job.json"
    store = store_spec()
    output = f"gs://{BUCKET}/exports/ceap"
    code, out, err = cli(
        "export", "--date", "2026-11-01", "--output", output, "--store", store,
        *DATAFLOW, *CONTAINER, "--dataflow_job_file", str(job_file),
    )  # fmt: skip
    assert code == 0, err
    job = Job.read(job_file)
    assert job.description["type"] == "JOB_TYPE_BATCH"
    assert {"Tables", "ReadDay", "ByPartition", "WriteParquet", "Commit"} <= job.steps
    assert job.pool["workerHarnessContainerImage"] == IMAGE
    assert any(output.encode() in text for text in pickles(job.pipeline))
    assert any(store.encode() in text for text in pickles(job.pipeline))
    assert local_paths(job, tmp_path, {str(job_file)}) == []


# -- the pieces, fast ---------------------------------------------------------------------


def test_a_dataflow_dry_run_gets_the_runner_that_describes_the_job():
    from pipelines.runners import DATAFLOW_DRY_RUN, normalize_beam_args

    assert normalize_beam_args(["--runner=DataflowRunner", "--dry_run=True"]) == [
        f"--runner={DATAFLOW_DRY_RUN}", "--dry_run=True",
    ]  # fmt: skip
    assert normalize_beam_args(["--runner", "DataflowRunner", "--dry_run", "True"]) == [
        "--runner", DATAFLOW_DRY_RUN, "--dry_run", "True",
    ]  # fmt: skip
    assert normalize_beam_args(["--runner=DataflowRunner"]) == ["--runner=DataflowRunner"]
    assert normalize_beam_args(["--dry_run=True"]) == ["--dry_run=True"]


def test_the_dry_run_runner_is_checked_as_dataflow():
    from apache_beam.options.pipeline_options import PipelineOptions

    from ceap.errors import ConfigError
    from pipelines.runners import DATAFLOW_DRY_RUN, validate_runner_options

    with pytest.raises(ConfigError, match="--project.*--setup_file.*dynamodb://"):
        validate_runner_options(PipelineOptions([f"--runner={DATAFLOW_DRY_RUN}"]))


def test_the_driver_lists_s3_sources_with_the_runs_flags(moto_endpoint):
    """The driver lists a program's sources (and reads their footers) before it builds a
    Pipeline; Beam's S3 filesystem had no options until one was built and refused every
    s3:// path ("Must provide one of client or options"), whatever the runner.
    ``prepare_beam_args`` hands it the run's flags: ``--s3_endpoint_url`` here."""
    import boto3
    from apache_beam.io.filesystems import FileSystems

    from connectors.files import list_files
    from pipelines.runners import prepare_beam_args

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket = f"ceap-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="deliveries/part-0.parquet", Body=b"PAR1")
    FileSystems.set_options(None)  # a fresh process: no Pipeline built yet
    prepare_beam_args([
        "--s3_endpoint_url", moto_endpoint, "--s3_access_key_id", "testing",
        "--s3_secret_access_key", "testing", "--s3_region_name", "us-east-1",
    ])  # fmt: skip
    assert list_files(f"s3://{bucket}/deliveries", (".parquet",)) == [
        f"s3://{bucket}/deliveries/part-0.parquet"
    ]
