"""The model registry: versioned skops artifacts with their metadata, local or remote.

Layout under a registry root (a directory, or an ``s3://`` / ``gs://`` prefix read and
written through Beam's ``FileSystems``)::

    <root>/<program>/<model_id>/<version>/model.skops        the fitted scikit-learn Pipeline
    <root>/<program>/<model_id>/<version>/model.skops.json   features, metrics, data range, sha256
    <root>/<program>/<model_id>/<version>/.claim              who took the version (object stores)
    <root>/<program>/<model_id>/latest                       text: the newest version ("3")

Versions are integers, never rewritten: a new training run claims ``<max>+1`` (the next
free one when two publish at once), writes it and only then moves ``latest``, so a reader sees either the old or the new model, never half of one.
A scorer's ``options.path`` may name the file, a version directory or ``.../latest``.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ceap.errors import ModelError
from ceap.home import ceap_home

MODEL_FILE = "model.skops"
LATEST = "latest"
META_SUFFIX = ".json"
CLAIM_FILE = ".claim"


def default_registry() -> str:
    """``$CEAP_HOME/models``."""
    return str(ceap_home() / "models")


def is_remote(path: str | Path) -> bool:
    return "://" in str(path)


def use_options(options=None) -> None:
    """Beam filesystem options for the registry outside a pipeline (``run.py train
    --s3_endpoint_url URL ...``): a ``PipelineOptions``, or None for the defaults."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    FileSystems.set_options(options if options is not None else PipelineOptions([]))


def _filesystems():
    """Beam's ``FileSystems``, ready for s3://. Outside a pipeline (``run.py train``, the
    Serving API, a test) Beam has no options and its S3 filesystem refuses to build a client
    ("Must provide one of client or options"); default ones let boto3 read the environment
    (``AWS_ENDPOINT_URL``, credentials, region). Options a pipeline or a worker has set
    (``--s3_endpoint_url`` ...) are never replaced."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.value_provider import RuntimeValueProvider

    if FileSystems._pipeline_options is None and RuntimeValueProvider.runtime_options is None:
        use_options(None)
    return FileSystems


@contextmanager
def _remote(action: str, path: str) -> Iterator[None]:
    """Every backend raises its own errors (BeamIOError, botocore's, google's): one
    ModelError naming the operation and the path, with the cause chained."""
    try:
        yield
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - re-raised as ModelError
        raise ModelError(f"cannot {action} {path}: {exc}") from exc


def join(root: str | Path, *parts: str) -> str:
    if is_remote(root):
        return _filesystems().join(str(root), *parts)
    return str(Path(root, *parts))


def exists(path: str) -> bool:
    """Whether the *object* exists (on S3 a "directory" prefix does not)."""
    if is_remote(path):
        with _remote("check", path):
            return _filesystems().exists(path)
    return Path(path).exists()


def read_bytes(path: str | Path) -> bytes:
    if is_remote(path):
        from apache_beam.io.filesystem import CompressionTypes

        # UNCOMPRESSED: bytes as stored, whatever the name ends with (.gz would inflate).
        raw = CompressionTypes.UNCOMPRESSED
        with (
            _remote("read", str(path)),
            _filesystems().open(str(path), compression_type=raw) as handle,
        ):
            return handle.read()
    return Path(path).read_bytes()


def write_bytes(path: str, data: bytes) -> None:
    """Writes a whole file, atomically: locally via a temporary file and a rename; on S3 and
    GCS an object only appears when its upload completes (Beam's S3 writer completes its
    multipart upload on close), so a reader never sees half of one."""
    if is_remote(path):
        from apache_beam.io.filesystem import CompressionTypes

        raw = CompressionTypes.UNCOMPRESSED
        with _remote("write", path), _filesystems().create(path, compression_type=raw) as handle:
            handle.write(data)
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a registry is shared
    os.replace(tmp, target)


def versions(root: str, program: str, model_id: str) -> list[int]:
    """The published versions of a model, ascending: those with a model file (on S3 a
    folder marker or a stray key is no version)."""
    base = join(root, program, model_id)
    if is_remote(root):
        names = _folders_holding(base, MODEL_FILE)
    else:
        names = [p.parent.name for p in Path(base).glob(f"*/{MODEL_FILE}")]
    return sorted(int(n) for n in names if n.isdigit())


def _folders_holding(base: str, name: str) -> list[str]:
    """On an object store: the names of the "folders" under ``base`` holding an object
    ``name`` (there are no directories, only keys)."""
    pattern = join(base, "*", name)
    with _remote("list", pattern):
        found = _filesystems().match([pattern])[0].metadata_list
    return [m.path.rstrip("/").split("/")[-2] for m in found]


def publish(root: str, program: str, model_id: str, model: bytes, metadata: dict) -> dict:
    """Writes ``model`` as the next version, its metadata beside it, then moves ``latest``.
    Returns the metadata as written (with ``version`` and ``path``).

    Two trainings publishing at once get different versions: each *claims* its version
    before writing (an exclusive mkdir locally, a create-if-absent object on S3 and GCS),
    and moves on to the next number when another got there first. ``latest`` is then set
    to the newest published version, so the later of two publishers leaves it right
    whichever finishes first (``_point_latest``)."""
    base = join(root, program, model_id)
    version = max([0, *versions(root, program, model_id), *_claimed(base)]) + 1
    while not _claim(join(base, str(version))):
        version += 1
    folder = join(base, str(version))
    path = join(folder, MODEL_FILE)
    meta = {**metadata, "program": program, "model_id": model_id, "version": version}
    meta["path"] = path
    write_bytes(path, model)
    write_bytes(path + META_SUFFIX, json.dumps(meta, indent=2, sort_keys=True).encode())
    _point_latest(root, program, model_id, version)
    return meta


def _point_latest(root: str, program: str, model_id: str, version: int) -> None:
    """Sets ``latest`` to the newest published version, then checks again: a publisher that
    listed before another's model was written may have overwritten a newer pointer, and its
    re-check (every model is written before its publisher's first pointer write) puts the
    newer one back, so the last writer always leaves the newest."""
    written = None
    while True:
        newest = max([version, *versions(root, program, model_id)])
        if newest == written:
            return
        write_bytes(join(root, program, model_id, LATEST), f"{newest}\n".encode())
        written = newest


def _claimed(base: str) -> list[int]:
    """Versions claimed, published or not (a publisher may be writing one right now)."""
    if is_remote(base):
        names = _folders_holding(base, CLAIM_FILE)
    else:
        names = [p.name for p in Path(base).glob("*") if p.is_dir()]
    return [int(n) for n in names if n.isdigit()]


def _claim(folder: str) -> bool:
    """Takes a version folder for this publisher: True when nobody had it."""
    if not is_remote(folder):
        try:
            Path(folder).mkdir(parents=True)
        except FileExistsError:
            return False
        return True
    marker = join(folder, CLAIM_FILE)
    with _remote("claim", marker):
        if marker.startswith("s3://"):
            return _claim_s3(marker)
        return _claim_gcs(marker)


def _claim_s3(marker: str) -> bool:
    """A conditional PUT (If-None-Match: *): S3 refuses it when the key exists. Built from
    the same options as Beam's S3 filesystem (``--s3_endpoint_url`` ..., else boto3's own
    environment), which has no conditional write of its own."""
    from apache_beam.io.aws.clients.s3.boto3_client import Client
    from botocore.exceptions import ClientError

    bucket, _, key = marker.removeprefix("s3://").partition("/")
    client = Client(_filesystems()._pipeline_options).client
    try:
        client.put_object(Bucket=bucket, Key=key, Body=_owner(), IfNoneMatch="*")
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("PreconditionFailed", "ConditionalRequestConflict"):
            return False
        raise
    return True


def _claim_gcs(marker: str) -> bool:
    """A create with ``if_generation_match=0``: GCS refuses it when the object exists."""
    from google.api_core.exceptions import PreconditionFailed
    from google.cloud import storage

    bucket, _, key = marker.removeprefix("gs://").partition("/")
    blob = storage.Client().bucket(bucket).blob(key)
    try:
        blob.upload_from_string(_owner(), if_generation_match=0)
    except PreconditionFailed:
        return False
    return True


def _owner() -> bytes:
    return f"{socket.gethostname()} pid {os.getpid()} at {datetime.now(UTC).isoformat()}\n".encode()


def locate(path: str | Path) -> str:
    """The model file a scorer's ``path`` names: the file itself, a version directory
    (its ``model.skops``) or a ``latest`` pointer (the version it names)."""
    text = str(path)
    if text.rstrip("/").endswith("/" + LATEST) or text == LATEST:
        if not exists(text):
            raise ModelError(
                f"model pointer {text} does not exist (train it: python run.py train --program P)"
            )
        version = read_bytes(text).decode().strip()
        if not version.isdigit():
            raise ModelError(f"model pointer {text} holds {version!r}, not a version number")
        return join(text.rstrip("/").rsplit("/", 1)[0], version, MODEL_FILE)
    if not is_remote(text):
        return str(Path(text, MODEL_FILE)) if Path(text).is_dir() else text
    # An object store has no directories: a version "directory" is a prefix whose
    # model.skops exists while the path itself is no object.
    inside = join(text.rstrip("/"), MODEL_FILE)
    if not text.endswith(MODEL_FILE) and not exists(text) and exists(inside):
        return inside
    return text


def metadata(model_path: str | Path) -> dict | None:
    """The registry metadata beside a model file, or None."""
    meta = str(model_path) + META_SUFFIX
    if not exists(meta):
        return None
    try:
        return json.loads(read_bytes(meta))
    except ValueError as exc:
        raise ModelError(f"model metadata {meta} is not valid JSON: {exc}") from exc
