"""A model file is code in disguise: CEAP loads only the types it trains (an explicit list,
never a module prefix), after its hash matched, and any file it cannot load is a ModelError
naming the file, never a raw KeyError from inside skops."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import skops.io as sio
from numpy.testing._private.utils import runstring
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from ceap.errors import ModelError
from scorers.sklearn import MODEL_TYPES, load_verified, model_types
from scorers.training import make_estimator


def runs_code_in_predict(marker) -> bytes:
    """FunctionTransformers chaining np.full_like(dtype=object) -> np.max -> runstring (which
    calls exec): every type is under sklearn. or numpy., the prefixes once trusted."""
    payload = f"open({str(marker)!r}, 'w').write('pwned')"
    pipe = Pipeline([
        ("fill", FunctionTransformer(np.full_like, kw_args={"fill_value": payload, "dtype": object})),
        ("pick", FunctionTransformer(np.max)),
        ("run", FunctionTransformer(runstring, kw_args={"dict": {}})),
        ("model", DummyClassifier()),
    ])  # fmt: skip
    return sio.dumps(pipe)  # never fitted here: fitting would run it


def write(tmp_path, data: bytes):
    path = tmp_path / "model.skops"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_a_model_that_would_run_code_is_refused_even_with_a_matching_hash(tmp_path):
    marker = tmp_path / "pwned"
    path, digest = write(tmp_path, runs_code_in_predict(marker))
    with pytest.raises(ModelError) as refused:
        load_verified(path, digest, trusted=[])
    said = str(refused.value)
    assert str(path) in said and "numpy.testing._private.utils.runstring" in said
    assert "sklearn.preprocessing._function_transformer.FunctionTransformer" in said
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["logistic", "hist_gbm"])
def test_what_ceap_trains_loads_and_predicts(tmp_path, kind):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3))
    x[::5, 1] = np.nan
    model = make_estimator(kind).fit(x, (x[:, 0] > 0).astype(int))
    path, digest = write(tmp_path, sio.dumps(model))
    assert model_types(path.read_bytes()) <= MODEL_TYPES
    loaded = load_verified(path, digest, trusted=[])
    np.testing.assert_allclose(loaded.predict_proba(x), model.predict_proba(x))


@pytest.mark.parametrize("data", [b"not a zip", b"PK\x05\x06" + b"\x00" * 18])
def test_a_file_skops_cannot_read_is_a_model_error_naming_it(tmp_path, data):
    path, digest = write(tmp_path, data)
    with pytest.raises(ModelError, match=f"model {path} cannot be loaded"):
        load_verified(path, digest, trusted=[])


def test_a_hash_mismatch_is_refused_before_anything_is_read(tmp_path):
    path, _ = write(tmp_path, b"whatever")
    with pytest.raises(ModelError, match="does not match"):
        load_verified(path, "0" * 64, trusted=[])
