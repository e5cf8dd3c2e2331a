"""``run.py train``: fits a program's propensity model on its historical outcomes and
publishes it, versioned, to the model registry.

The training set is an ``outcomes`` table (Parquet: one row per past candidate, its
features and a boolean label, ``responded`` by default), filtered to the program when it
has a ``program`` column. What to train is read from the program's config, so there is no
second place to keep in sync: the first ``sklearn`` model of ``scoring.models`` (or the one
named by ``model_id``) gives the model id and the feature columns, in order. The features
are turned into a matrix by the very function the scorer uses at run time
(``scorers.sklearn.feature_matrix``), so training and scoring cannot disagree on
booleans, integer columns or nulls.

Publishing moves ``latest`` only when the new model's holdout AUC is at least the current
``latest`` model's on the same rows, or when forced (scorers/promotion.py).

The holdout is the most recent ``holdout`` share of rows by ``created_at`` (a random
stratified share when there is no time column): the metrics say how the model does on
customers after the ones it learnt from, which is how it will be used.
"""

from __future__ import annotations

import hashlib
import platform
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ceap.errors import ConfigError

DEFAULT_OUTCOMES = "data/warehouse/outcomes"
ESTIMATORS = ("logistic", "hist_gbm")


def make_estimator(kind: str, seed: int = 0):
    """A scikit-learn Pipeline: median imputation (a missing feature is common: a product
    without a price), then the classifier. Only scikit-learn types, so skops loads it."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logistic":
        return Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("scale", StandardScaler()),
                ("model", LogisticRegression(max_iter=1000)),
            ]
        )
    if kind == "hist_gbm":
        return Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("model", HistGradientBoostingClassifier(max_iter=200, random_state=seed)),
            ]
        )
    raise ConfigError(f"unknown estimator {kind!r}; expected one of {', '.join(ESTIMATORS)}")


def model_entry(program, model_id: str | None = None):
    """The scoring.models entry to train: ``model_id``, else the first sklearn one."""
    models = program.scoring.models
    if model_id is not None:
        return next((m for m in models if m.id == model_id), None)
    return next((m for m in models if m.type == "sklearn"), None)


def read_outcomes(
    path: str, program: str, columns: list[str], optional: list[str] = ()
) -> pa.Table:
    """The program's rows of an outcomes table (a Parquet file or directory, local or a URI
    pyarrow can open): ``columns`` must exist, ``optional`` ones are read when they do."""
    import pyarrow.dataset as ds

    try:
        data = ds.dataset(path, format="parquet")
    except (FileNotFoundError, OSError, pa.ArrowInvalid) as exc:
        raise ConfigError(
            f"outcomes table {path} cannot be read: {exc} (python run.py generate writes one)"
        ) from exc
    names = data.schema.names
    missing = [c for c in columns if c not in names]
    if missing:
        raise ConfigError(f"outcomes table {path} has no column(s) {missing}; it has {names}")
    wanted = [c for c in dict.fromkeys([*columns, *optional, "created_at"]) if c in names]
    where = (ds.field("program") == program) if "program" in names else None
    return data.to_table(columns=wanted, filter=where)


def split(table: pa.Table, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of (train, holdout): the newest rows by created_at when there is one."""
    n = table.num_rows
    cut = n - max(1, int(round(n * holdout)))
    if "created_at" in table.schema.names:
        order = np.asarray(pc.sort_indices(table, [("created_at", "ascending")]))
        return order[:cut], order[cut:]
    order = np.random.default_rng(seed).permutation(n)
    return order[:cut], order[cut:]


def train(
    program: str,
    config_dir: str | Path,
    registry: str | None = None,
    *,
    outcomes: str | None = None,
    features: list[str] | None = None,
    model_id: str | None = None,
    label: str = "responded",
    estimator: str = "logistic",
    holdout: float = 0.2,
    seed: int = 0,
    force: bool = False,
) -> dict:
    """Fits, evaluates and publishes one model; returns its registry metadata.

    Args:
      program: the program name (its config is ``<config_dir>/<program>.yaml``).
      config_dir: where the program configs are.
      registry: registry root (default ``$CEAP_HOME/models``; s3:// and gs:// work).
      outcomes: the outcomes table (default ``data/warehouse/outcomes``).
      features: feature columns (default: the model entry's ``options.features``).
      model_id: the scoring.models entry (default: the first ``sklearn`` one).
      label: boolean column, true when the customer responded.
      estimator: ``logistic`` or ``hist_gbm``.
      holdout: share of the (newest) rows kept out of training for the metrics.
      force: publish and move ``latest`` even when the new model's holdout AUC is below the
        current ``latest`` model's (scorers/promotion.py); without it such a model is not
        published and ``promotion.NotPromoted`` is raised.
    """
    import sklearn
    import skops
    import skops.io as sio
    from sklearn.metrics import log_loss, roc_auc_score

    from configs.programs import load_by_name
    from scorers import promotion
    from scorers import registry as reg
    from scorers.sklearn import feature_matrix

    config = load_by_name(program, Path(config_dir))
    entry = model_entry(config, model_id)
    if features is None:
        if entry is None or not getattr(entry.options, "features", None):
            raise ConfigError(
                f"program {program}: no sklearn model in scoring.models to take features from; "
                "pass --features a,b and --model-id"
            )
        features = list(entry.options.features)
    model_id = model_id or (entry.id if entry is not None else f"{program}_propensity_v1")
    if not 0.0 < holdout < 1.0:
        raise ConfigError(f"holdout must be between 0 and 1, got {holdout}")
    source = outcomes or DEFAULT_OUTCOMES
    root = registry or reg.default_registry()
    current = promotion.current_model(root, program, model_id)
    table = read_outcomes(
        source, program, [*features, label], (current or {}).get("features") or []
    )
    table = table.filter(pc.is_valid(table.column(label)))
    if table.num_rows < 20:
        raise ConfigError(f"program {program}: {table.num_rows} labelled outcomes in {source}")
    batch = table.combine_chunks().to_batches()[0]
    x = feature_matrix(batch, features, model_id)
    y = pc.cast(table.column(label), pa.int8()).to_numpy().astype(np.int64)
    if len(np.unique(y)) < 2:
        raise ConfigError(f"program {program}: the label {label!r} has a single value")
    fit_rows, test_rows = split(table, holdout, seed)
    model = make_estimator(estimator, seed).fit(x[fit_rows], y[fit_rows])
    p = model.predict_proba(x[test_rows])[:, 1]
    metrics = {
        "auc": round(float(roc_auc_score(y[test_rows], p)), 4)
        if len(np.unique(y[test_rows])) == 2
        else None,
        "log_loss": round(float(log_loss(y[test_rows], p, labels=[0, 1])), 4),
        "base_rate": round(float(y[test_rows].mean()), 4),
        "mean_score": round(float(p.mean()), 4),
        "train_rows": len(fit_rows),
        "holdout_rows": len(test_rows),
    }
    if current is not None:
        trusted = list(getattr(entry.options, "trusted", []) or []) if entry is not None else []
        current = promotion.evaluate_current(current, batch, test_rows, y, trusted)
    decision = promotion.decide(metrics["auc"], current, force)
    data_range = {}
    if "created_at" in table.schema.names:
        times = table.column("created_at")
        lo, hi = pc.min(times).as_py(), pc.max(times).as_py()
        data_range = {"from": lo.isoformat() if lo else None, "to": hi.isoformat() if hi else None}
    blob = sio.dumps(model, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    metadata = {
        "features": features,
        "label": label,
        "estimator": estimator,
        "metrics": metrics,
        "training_data": {"path": str(source), "rows": table.num_rows, **data_range},
        "sha256": hashlib.sha256(blob).hexdigest(),
        "created_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "sklearn_version": sklearn.__version__,
        "skops_version": skops.__version__,
        "python_version": platform.python_version(),
        "promotion": {"decision": decision, "current": current},
    }
    return reg.publish(root, program, model_id, blob, metadata)
