"""``sklearn``: a scikit-learn model (usually a Pipeline) saved with skops.

Loading never unpickles arbitrary objects: the file's sha256 must match the one pinned in
``options.sha256`` or recorded in the model registry's metadata beside it
(``<file>.json``, written by ``run.py train``), and only the types CEAP trains (``MODEL_TYPES``, an
explicit list) or listed in ``options.trusted`` are loaded. ``options.path`` may name the
file, a registry version directory or a registry ``latest`` pointer, locally or on
``s3://`` / ``gs://`` (``scorers/registry.py``).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from ceap.errors import ConfigError, ModelError
from ceap.file_fields import MODEL, file_field
from ceap.home import ceap_home
from ceap.plugins import scorers
from scorers import registry
from scorers.base import Scorer, merge_errors, numbers, score_good_rows

MODEL_TYPES = frozenset({
    # the estimators `run.py train` builds (scorers/training.py make_estimator) ...
    "sklearn.pipeline.Pipeline",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    # ... the parts they are saved with ...
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
    "sklearn.preprocessing._label.LabelEncoder",
    # ... and their data: containers, arrays and numpy's numeric types
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.str", "builtins.int",
    "builtins.float", "builtins.bool", "builtins.NoneType",
    "numpy.ndarray", "numpy.dtype", "numpy.float64", "numpy.float32", "numpy.int64",
    "numpy.int32", "numpy.uint64", "numpy.uint32", "numpy.uint8", "numpy.bool_",
    "numpy.random._generator.Generator", "numpy.random._pcg64.PCG64",
})  # fmt: skip
"""Every type a model file may hold, by its full name: an explicit list, never a module
prefix (``numpy.`` includes ``numpy.testing._private.utils.runstring``, which calls
``exec``; a chain of FunctionTransformers reached it from ``predict_proba``). Anything else
must be listed by the program in ``options.trusted``, reviewed by its authors."""


def model_types(data: bytes) -> set[str]:
    """Every ``module.Class`` a skops file names (its ``schema.json``), functions included:
    skops' own list of untrusted types leaves out those it trusts by default."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
    found, stack = set(), [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("__module__"), str) and isinstance(node.get("__class__"), str):
                found.add(f"{node['__module__']}.{node['__class__']}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


class SklearnOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = file_field(MODEL)
    """The .skops file, a registry version directory or ``.../<model_id>/latest``: absolute,
    relative to the working directory, or to ``$CEAP_HOME``; or an s3:// / gs:// URI."""
    features: list[str] = Field(min_length=1)
    """Candidate columns fed to the model, in the order it was trained on."""
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    trusted: list[str] = Field(default_factory=list)
    """Extra fully-qualified types skops may load (reviewed by you)."""


BUNDLED = Path(__file__).resolve().parents[1]
"""The source tree: the seed programs' trained models are committed under ``models/``."""


def resolve_model_path(path: str) -> Path:
    """Absolute, else relative to the working directory, else to ``$CEAP_HOME``, else to
    the source tree (so the seed configs' models are found from any directory)."""
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return candidate
    home = ceap_home() / path
    if not home.exists() and (BUNDLED / path).exists():
        return BUNDLED / path
    return home


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def locate_model(path: str) -> str:
    """The model file for ``options.path``: a URI as is, a local path resolved against the
    working directory then ``$CEAP_HOME``; ``latest`` pointers and version directories
    followed to the file they name."""
    return registry.locate(path if registry.is_remote(path) else resolve_model_path(path))


def load_verified(path: Path | str, pinned: str | None, trusted: list[str]):
    """Loads a skops model after checking its hash and the types it contains."""
    import skops.io as sio

    if not registry.exists(str(path)):
        raise ModelError(
            f"model file {path} does not exist (train it: python run.py train --program P)"
        )
    expected = pinned
    meta_name = f"{str(path).rsplit('/', 1)[-1]}{registry.META_SUFFIX}"
    if expected is None:
        expected = (registry.metadata(path) or {}).get("sha256")
    if expected is None:
        raise ModelError(
            f"model {path} is unverified: pin options.sha256 or keep its registry metadata {meta_name}"
        )
    # Read once: the bytes that were hashed are the bytes that are loaded (no swap between).
    data = registry.read_bytes(path)
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ModelError(f"model {path}: sha256 {actual} does not match the expected {expected}")
    try:
        untrusted = sorted(model_types(data) - MODEL_TYPES - set(trusted))
        if untrusted:
            raise ModelError(
                f"model {path} contains types CEAP does not train: {untrusted} (list them in "
                "options.trusted only after reviewing what they do)"
            )
        return sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file: name it, never a KeyError
        raise ModelError(f"model {path} cannot be loaded: {type(exc).__name__}: {exc}") from None


def feature_rows(
    batch: pa.RecordBatch, features: list[str], model_id: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """The features as a float matrix, and per row the first feature cell that is not a
    number (None when there is none): such a row cannot be scored, the others can."""
    missing = [f for f in features if f not in batch.schema.names]
    if missing:
        raise ConfigError(f"scorer {model_id}: no feature column(s) {missing} on the candidate")
    cols, errors = [], []
    for name in features:
        values, bad = numbers(batch.column(name), f"feature {name!r}")
        cols.append(values)
        errors.append(bad)
    x = np.column_stack(cols) if cols else np.empty((batch.num_rows, 0))
    return x, merge_errors(*errors)


def feature_matrix(batch: pa.RecordBatch, features: list[str], model_id: str) -> np.ndarray:
    """The features as a float matrix; a cell that is not a number is an error (training)."""
    x, errors = feature_rows(batch, features, model_id)
    if errors is not None:
        first = next(e for e in errors if e is not None)
        raise ValueError(f"{int(np.not_equal(errors, None).sum())} rows: {first}")
    return x


@scorers.register("sklearn")
class SklearnScorer(Scorer):
    Options = SklearnOptions

    def reads(self) -> set[str]:
        return set(self.options.features)

    def setup(self) -> None:
        o = self.options
        self._model = load_verified(locate_model(o.path), o.sha256, o.trusted)

    def score(self, batch: pa.RecordBatch) -> np.ndarray:
        if not hasattr(self, "_model"):
            self.setup()
        x, errors = feature_rows(batch, self.options.features, self.model_id)
        return score_good_rows(errors, len(x), lambda rows: self._predict(x[rows]))

    def _predict(self, x: np.ndarray) -> np.ndarray:
        model = self._model
        if hasattr(model, "predict_proba"):
            return model.predict_proba(x)[:, 1]
        if hasattr(model, "decision_function"):
            return model.decision_function(x)
        return model.predict(x)
