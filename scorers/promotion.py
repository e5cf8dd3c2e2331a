"""The promotion gate of ``run.py train``: ``latest`` never moves to a model that scores worse
on the holdout than the model ``latest`` names now.

Before publishing, the current ``latest`` model is loaded the way a scorer loads it
(``scorers.sklearn.load_verified``: sha256 from its registry metadata, CEAP's type allow-list
plus the program's ``options.trusted``) and scored on the very holdout rows the new model was
measured on, with its own features (from its metadata). Then:

  - no ``latest`` yet: the new model is published (``first``);
  - new AUC >= current AUC: published, ``latest`` moves (``better``; a tie moves too: the
    newer model learnt from newer data);
  - new AUC < current AUC: nothing is published and ``latest`` stays (``NotPromoted``),
    unless ``force``: then it is published and ``latest`` moves (``forced``);
  - the new model has no holdout AUC (the holdout has a single class): nothing is published
    and ``latest`` stays, unless ``force`` (an unmeasured model is no evidence of being as
    good as the one serving);
  - the current model cannot be evaluated (it fails verification, its features are not in
    the outcomes table): the new model is published (``unrated``) and the reason is
    recorded. A model production cannot load or that cannot be compared gives no evidence
    against the new one.

Limits: the holdout is the newest rows of *this* run's outcomes; when they include rows the
current model was trained on (the same table retrained with a larger ``--holdout``), its AUC
is flattering and the new model needs ``force``. In the usual case (newer outcomes appended)
the current model never saw the holdout. The comparison and the publication are two steps. A training that publishes between
them (two trainings of one model at once) is not compared with this one; the registry's
own rule then applies (``latest`` names the newest published version).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ceap.errors import CeapError, ModelError

FIRST, BETTER, FORCED, UNRATED = "first", "better", "forced", "unrated"


class NotPromoted(CeapError):
    """The new model scored worse on the holdout than the current ``latest``, or its AUC
    could not be measured: it was not published and ``latest`` did not move. ``metrics``
    are the new model's, ``current`` the comparison (``version``, ``auc``)."""

    def __init__(self, message: str, metrics: dict, current: dict) -> None:
        super().__init__(message)
        self.metrics = metrics
        self.current = current


def current_model(root: str, program: str, model_id: str) -> dict | None:
    """What ``latest`` names now: ``{"version", "path", "features"}``, or None when the model
    has no ``latest`` yet."""
    from scorers import registry

    pointer = registry.join(root, program, model_id, registry.LATEST)
    if not registry.exists(pointer):
        return None
    path = registry.locate(pointer)
    meta = registry.metadata(path) or {}
    version = path.rstrip("/").rsplit("/", 2)[-2]
    return {"version": int(version) if version.isdigit() else version, "path": path,
            "features": meta.get("features")}  # fmt: skip


def evaluate_current(
    current: dict, batch: pa.RecordBatch, rows: np.ndarray, y: np.ndarray, trusted: list[str]
) -> dict:
    """The current model's holdout AUC: ``current`` plus ``auc`` (None when it cannot be
    computed) and ``error`` (why not, or None). ``batch`` holds the outcomes (every column
    read), ``rows`` the holdout's row indices into it, ``y`` all labels (0/1)."""
    from sklearn.metrics import roc_auc_score

    from scorers.sklearn import feature_matrix, load_verified

    out = {k: current[k] for k in ("version", "path")} | {"auc": None, "error": None}
    features = current.get("features")
    missing = [f for f in features or [] if f not in batch.schema.names]
    if not features or missing:
        out["error"] = f"its features {missing or features} are not in the outcomes table"
        return out
    if len(np.unique(y[rows])) < 2:
        out["error"] = "the holdout has a single class (no AUC)"
        return out
    try:
        model = load_verified(current["path"], None, trusted)
        x = feature_matrix(batch, features, str(current["version"]))
        p = model.predict_proba(x[rows])[:, 1]
    except (ModelError, ValueError) as exc:
        out["error"] = f"it cannot be evaluated: {exc}"
        return out
    out["auc"] = round(float(roc_auc_score(y[rows], p)), 4)
    return out


def decide(new_auc: float | None, current: dict | None, force: bool) -> str:
    """``first``, ``better``, ``forced`` or ``unrated`` (latest moves), or raises
    NotPromoted (latest stays)."""
    if current is None:
        return FIRST
    if new_auc is None:  # the new model's quality is unmeasured: no evidence it is as good
        if force:
            return FORCED
        raise NotPromoted(
            "its holdout AUC cannot be measured (the holdout has a single class): latest "
            f"stays at v{current['version']} and the new model was not published",
            {"auc": None},
            current,
        )
    if current["auc"] is None:
        return UNRATED
    if new_auc >= current["auc"]:
        return BETTER
    if force:
        return FORCED
    raise NotPromoted(
        f"holdout AUC {new_auc:.4f} is below the current model's ({current['auc']:.4f}, "
        f"v{current['version']}): latest stays at v{current['version']} and the new model "
        "was not published",
        {"auc": new_auc},
        current,
    )


def summary(meta_or_error) -> list[str]:
    """The closing summary's comparison lines, for a published model's metadata or a
    NotPromoted error."""
    if isinstance(meta_or_error, NotPromoted):
        current, new_auc = meta_or_error.current, meta_or_error.metrics["auc"]
        decision = "kept"
    else:
        promo = meta_or_error.get("promotion") or {}
        current, decision = promo.get("current"), promo.get("decision", FIRST)
        new_auc = meta_or_error["metrics"]["auc"]
    lines = [f"  holdout AUC    {_auc(new_auc)} new model"]
    if current is None:
        lines[0] += " (no current latest)"
    else:
        lines[0] += f", {_auc(current['auc'])} current latest (v{current['version']})"
        if current.get("error"):
            lines.append(f"  (current not compared: {current['error']})")
    what = {
        FIRST: "latest set to the new model (the first"
        + ("; its AUC is unmeasured: the holdout has one class)" if new_auc is None else ")"),
        BETTER: "latest moved to the new model (AUC not lower)",
        FORCED: "latest moved to the new model although its AUC is "
        f"{'lower' if new_auc is not None else 'unmeasured'} (--force)",
        UNRATED: "latest moved to the new model (no comparison possible)",
        "kept": f"latest kept at v{current['version'] if current else '?'}: the new model "
        f"{'scored lower' if new_auc is not None else 'has no holdout AUC'} and was not "
        "published (--force publishes it)",
    }[decision]
    return [*lines, f"  latest         {what}"]


def _auc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
