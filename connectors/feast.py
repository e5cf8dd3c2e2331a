"""``feast``: features looked up by entity key in a Feast online store, for ``enrich:`` entries.

Like ``sagemaker_feature_store``, a Feast store is not read whole: the enrichment step asks
for the distinct keys of each batch, ``FeatureStore.get_online_features(features=...,
entity_rows=[{join_key: key}, ...])`` answers up to ``batch_size`` of them per call,
answers are cached for ``cache_seconds``, and keys the store does not know keep nulls.

    enrich:
      - type: feast
        key: customer_id
        options:
          repo_path: feature_repo            # the directory holding feature_store.yaml
          join_key: customer_id              # the Feast entity's join key
          features: [customer_stats:trust_score, customer_stats:opted_out]
          # feature_service: customer_features   # instead of `features`
        columns: [trust_score, opted_out]

Why not Beam's ``enrichment_handlers.feast_feature_store``: that handler enriches one
``beam.Row`` per ``get_online_features`` call (one entity row each), while CEAP's keyed
lookups take a whole Arrow batch's distinct keys at once (``_KeyedEnrichFn`` in
``transforms/enrichment.py``). One call for hundreds of keys is what Feast's online stores
are built for (one SQL ``IN``/Redis ``MGET`` per view), so this connector calls it directly.

Values are handed back as text, the lookup contract the keyed enrichment step shares with
``sagemaker_feature_store``: it types a column as numbers or booleans when every value
reads as one. Feast's own types are therefore flattened to text, float and bool.

Needs the optional extra: ``pip install "ceap[feast]"``.
"""

from __future__ import annotations

import contextlib
import math
import os
from datetime import date, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ceap.errors import ConfigError, ConnectorError
from ceap.plugins import connectors
from connectors.base import Connector


class FeastOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repo_path: str | None = None
    """The Feast repo: the directory holding ``feature_store.yaml``."""
    fs_yaml_file: str | None = None
    """Or the ``feature_store.yaml`` file itself (relative paths in it resolve against
    ``repo_path`` when given, else against the file's own directory)."""
    config: dict[str, Any] | None = None
    """Or the content of a ``feature_store.yaml`` inline (``project``, ``registry``,
    ``provider``, ``online_store``...); relative paths resolve against ``repo_path``."""
    join_key: str = Field(min_length=1)
    """The entity's join key in Feast (the entity rows are ``{join_key: key}``)."""
    key_type: Literal["string", "int64"] = "string"
    """The join key's value type in Feast; candidate keys are text and converted to it."""
    features: list[str] = Field(default_factory=list)
    """Feature references, ``<feature_view>:<feature>``."""
    feature_service: str | None = None
    """Or the name of a Feast feature service (instead of ``features``)."""
    batch_size: int = Field(default=500, ge=1)
    """Entity rows per ``get_online_features`` call."""
    cache_seconds: float = Field(default=300, ge=0)
    """How long a looked-up entity is reused before it is asked again."""

    @model_validator(mode="after")
    def _exactly_one(self) -> FeastOptions:
        if not (self.repo_path or self.fs_yaml_file or self.config):
            raise ValueError("name the Feast repo: `repo_path`, `fs_yaml_file` or `config`")
        if self.fs_yaml_file and self.config:
            raise ValueError("give one of `fs_yaml_file` or `config`, not both")
        if bool(self.features) == bool(self.feature_service):
            raise ValueError("give exactly one of `features` or `feature_service`")
        return self


_PROMETHEUS_ENV = ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR")


def load_feast() -> ModuleType:
    """The ``feast`` module, imported without letting it change this process's Prometheus
    setup, or a ConfigError saying which extra to install.

    Importing feast (0.6x: ``feast.metrics``, loaded by ``from feast import FeatureStore``)
    points ``PROMETHEUS_MULTIPROC_DIR`` at a temp dir of its own and, when
    ``prometheus_client`` is not loaded yet, makes every Prometheus metric of the process
    file-backed: the serving API's ``/metrics`` would then read feast's directory instead of
    CEAP's counters. So prometheus_client is loaded first and the variables are put back.
    """
    import prometheus_client  # noqa: F401 - loaded before feast: metric values stay in memory

    saved = {name: os.environ.get(name) for name in _PROMETHEUS_ENV}
    try:
        import feast

        with contextlib.suppress(ImportError):  # older feast has no metrics module
            import feast.metrics  # noqa: F401 - its import-time side effect, under the guard
    except ImportError as exc:
        raise ConfigError(
            'the feast enrichment connector needs feast: pip install "ceap[feast]"'
        ) from exc
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return feast


@connectors.register("feast")
class FeastConnector(Connector):
    Options = FeastOptions
    supports_lookup = True

    def client(self):
        """The ``feast.FeatureStore`` of the configured repo (one per DoFn, in ``setup``)."""
        FeatureStore = load_feast().FeatureStore  # noqa: N806 - feast's class
        o = self.options
        repo = o.repo_path or (os.path.dirname(o.fs_yaml_file) if o.fs_yaml_file else None)
        try:
            if o.config is not None:
                from feast.repo_config import RepoConfig

                config = RepoConfig(**{**o.config, "repo_path": repo or os.getcwd()})
                return FeatureStore(repo_path=repo, config=config)
            yaml_file = Path(o.fs_yaml_file) if o.fs_yaml_file else None
            return FeatureStore(repo_path=repo, fs_yaml_file=yaml_file)
        except Exception as exc:  # noqa: BLE001 - Feast raises many kinds; named for the user
            raise ConfigError(f"feast repo {self._where()}: {exc}") from exc

    def _where(self) -> str:
        o = self.options
        return repr(o.fs_yaml_file or o.repo_path or "<inline config>")

    def splits(self) -> list:
        raise ConnectorError("feast is a keyed lookup for enrich:, not a source")

    def lookup(
        self, keys: list[str], columns: list[str], client: Any = None
    ) -> dict[str, dict[str, Any]]:
        """key -> {column: value as text} for the keys the store knows (any feature set)."""
        store = client or self.client()
        o = self.options
        features = self._features(store)
        found: dict[str, dict[str, Any]] = {}
        keys = [str(k) for k in keys]
        for i in range(0, len(keys), o.batch_size):
            chunk = keys[i : i + o.batch_size]
            rows = [{o.join_key: self._entity_value(k)} for k in chunk]
            try:
                answer = store.get_online_features(features=features, entity_rows=rows).to_dict()
            except Exception as exc:  # noqa: BLE001 - named for the user, with the repo
                raise ConnectorError(f"feast repo {self._where()}: {exc}") from exc
            missing = [c for c in columns if c not in answer]
            if missing:
                names = ", ".join(n for n in answer if n != o.join_key)
                raise ConfigError(
                    f"feast: the features have no column(s) {missing}; they have: {names}"
                )
            for j, key in enumerate(chunk):
                values = {c: _text(answer[c][j]) for c in columns}
                if any(v is not None for v in values.values()):
                    found[key] = values
        return found

    def _features(self, store: Any) -> Any:
        """The feature references, or the feature service (resolved once per store)."""
        o = self.options
        if not o.feature_service:
            return o.features
        cached = getattr(self, "_service", None)
        if cached is None or cached[0] is not store:
            try:
                cached = (store, store.get_feature_service(o.feature_service))
            except Exception as exc:  # noqa: BLE001 - Feast's own "not found" error, named
                raise ConfigError(
                    f"feast repo {self._where()}: no feature service {o.feature_service!r}: {exc}"
                ) from exc
            self._service = cached
        return cached[1]

    def _entity_value(self, key: str) -> Any:
        if self.options.key_type == "int64":
            try:
                return int(key)
            except ValueError as exc:
                raise ConnectorError(
                    f"feast: key {key!r} is not an integer (join_key {self.options.join_key!r} "
                    "is int64)"
                ) from exc
        return key


def _text(value: Any) -> str | None:
    """A Feast value as the text the keyed enrichment step types (None and NaN are null)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
