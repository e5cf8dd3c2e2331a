"""The program config contract (docs/architecture.md, "Program YAML"), validated with pydantic.

Loading is two passes so every error names the file and the full key path: first the
program's own shape, then each component's ``options`` against the plugin's own
``Options`` model (resolved from its ``type`` through the registries), as Feast does.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ceap import durations
from ceap.errors import CeapError, ConfigError
from configs.yaml_reading import DuplicateKeyError, key_path, read_yaml  # noqa: F401 - read_yaml is public here too

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
Duration = durations.Duration
"""A config duration: ``30s``, ``15m``, ``1h``, ``3d`` (or combined, ``1h30m``), never a bare
number (``ceap/durations.py``)."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class Component(Strict):
    """A plugin chosen by ``type`` and built from its ``options``."""

    type: str
    """Registered name, entry-point name or dotted path of the plugin class."""
    options: Any = Field(default_factory=dict)
    """The plugin's own settings, validated by its ``Options`` model after load."""


class SourceConfig(Component):
    traffic: float | None = Field(default=None, ge=0, le=100)
    """Share (%) of customers, by hash of customer_id, read from this source."""
    shadow: bool = False
    """Read and compared with the primary, never written (connector migrations)."""
    name: str | None = None


class EventsConfig(Component):
    delay: Duration = timedelta(0)
    """Cooling period: the candidate may be delivered this long after its event."""
    max_lateness: Duration | None = None
    """An event whose time is further than this behind the clock is rejected as late (its
    ask would come too long after the fact); none by default."""
    dedup_window: Duration = timedelta(days=1)
    """A repeat of an event (same ``fields.event_id``, else same customer, subject and
    event time) seen again within this window is dropped as a duplicate."""


class FieldsConfig(Strict):
    """How a source row (or a streaming event) becomes a candidate."""

    customer_id: str
    subject_id: str
    event_time: str | None = None
    """Column holding the event's time; the run time when absent."""
    event_id: str | None = None
    """Streaming: the event's own id, used to drop repeated events (default: customer,
    subject and event time together)."""
    context: list[str] = Field(default_factory=list)
    """Columns carried on the candidate (after enrichment, so enriched ones may be named)."""


class EnrichConfig(Component):
    key: str
    """The candidate column joined on."""
    on: str | None = None
    """The table's column, when its name differs from ``key``."""
    columns: list[str] = Field(default_factory=list)
    """Columns brought in (all but the key when empty); unmatched rows get nulls."""


class FilterConfig(Component):
    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    """Label in the funnel and the graph (default ``<index>:<type>``)."""


class ModelConfig(Component):
    id: str
    traffic: float | None = Field(default=None, ge=0, le=100)
    """Experiment arm share (%), by salted hash of customer_id."""
    treatment: str | None = None
    """Arm name recorded on candidates (default: the model id)."""


class ScoringConfig(Strict):
    models: list[ModelConfig] = Field(min_length=1)
    min_score: float | None = None
    fallback: Literal["cached", "skip"] = "skip"
    """On model failure: the last stored score for the key, else skip with a reason."""
    salt: str | None = None
    """Experiment salt (default: the program name)."""


class RankingConfig(Strict):
    top_n: int | None = Field(default=None, ge=1)
    per: Literal["program", "subject", "customer"] = "program"
    top_n_column: str | None = Field(default=None, min_length=1, max_length=128)
    """Each group's own cap, read from this column of its rows (an event's capacity);
    ``top_n`` applies where it is null. Only with ``per: subject`` or ``per: customer``."""

    @model_validator(mode="after")
    def _per_group(self) -> RankingConfig:
        if self.top_n_column is not None and self.per == "program":
            raise ValueError("top_n_column caps each subject or customer: use per: subject")
        return self


class StoreConfig(Strict):
    ttl: Duration = timedelta(days=30)


TEMPLATE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
"""A template name is a word: found as ``<config-dir>/templates/<name>.<channel>.j2``, never
a path (``../x``)."""


WHEN_PATTERN = r"^(responded|not_responded|(not_)?(opened|clicked):[a-z][a-z0-9_]*)$"
"""A step's send-time condition (DESIGN §9)."""


class AfterConfig(Strict):
    """A step that follows another: due ``delay`` after its parent was sent (or shadowed)."""

    step: str = Field(pattern=NAME_PATTERN)
    delay: Duration = timedelta(0)


class AtConfig(Strict):
    """A step due at a time read from the candidate: its context ``column`` plus ``offset``
    (which may be negative: ``-1d`` is the day before)."""

    column: str = Field(min_length=1, max_length=128)
    offset: durations.SignedDuration = timedelta(0)


class ChannelConfig(Component):
    """One step of the program's journey on a channel (DESIGN §9)."""

    name: str | None = Field(default=None, pattern=NAME_PATTERN, max_length=64)
    """The step's name (default: the channel type), unique within the program."""
    template: str | None = Field(default=None, pattern=TEMPLATE_PATTERN, max_length=100)
    delay: Duration = timedelta(0)
    """Send this long after the candidate's event_time."""
    send_at: str | None = None
    """``HH:MM`` in the customer's local time (``timezone`` column), else UTC."""
    shadow: bool = False
    after: AfterConfig | None = None
    at: AtConfig | None = None
    when: str | None = Field(default=None, pattern=WHEN_PATTERN)
    """Checked at send time: responded, not_responded, (not_)opened:<step>, (not_)clicked:<step>."""

    @field_validator("send_at")
    @classmethod
    def _hh_mm(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError("expected a time of day as HH:MM, e.g. 10:00")
        return value

    @model_validator(mode="after")
    def _one_timing(self) -> ChannelConfig:
        if self.after is not None and self.at is not None:
            raise ValueError("a step is due `after:` another step or `at:` a time, not both")
        if (self.after is not None or self.at is not None) and self.delay:
            raise ValueError("`delay:` counts from the event; with `after:` use after.delay, "
                             "with `at:` use at.offset")  # fmt: skip
        return self

    @property
    def step(self) -> str:
        return self.name or self.type

    @property
    def condition_steps(self) -> list[str]:
        """The steps ``when:`` refers to (``opened:invite`` -> ``invite``)."""
        return [self.when.split(":", 1)[1]] if self.when and ":" in self.when else []


class ProgramConfig(Strict):
    program: str = Field(pattern=NAME_PATTERN)
    action: str
    subject_type: str
    description: str | None = None
    source: list[SourceConfig] = Field(default_factory=list)
    events: EventsConfig | None = None
    fields: FieldsConfig
    enrich: list[EnrichConfig] = Field(default_factory=list)
    filters: list[FilterConfig] = Field(default_factory=list)
    scoring: ScoringConfig
    ranking: RankingConfig = Field(default_factory=RankingConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    channels: list[ChannelConfig] = Field(default_factory=list)
    staleness: Duration | None = None
    """Serving: candidates older than this are re-checked before they are returned."""

    @field_validator("source", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _consistent(self) -> ProgramConfig:
        if not self.source and self.events is None:
            raise ValueError("a program needs a batch `source:` or a streaming `events:` block")
        primaries = [s for s in self.source if not s.shadow]
        if self.source and not primaries:
            raise ValueError("source: at least one source must not be a shadow")
        _fill_shares(primaries, "source")
        _fill_shares(self.scoring.models, "scoring.models")
        ids = [m.id for m in self.scoring.models]
        if len(set(ids)) != len(ids):
            raise ValueError(f"scoring.models: model ids must be unique, got {ids}")
        _check_steps(self.channels, self.fields.context)
        labels = self.filter_labels()
        if len(set(labels)) != len(labels):
            raise ValueError(f"filters: names must be unique, got {labels}")
        return self

    def filter_labels(self) -> list[str]:
        """Stable, unique step labels: the filter's name, else ``<index>:<type>``."""
        return [f.name or f"{i}:{f.type}" for i, f in enumerate(self.filters)]

    @property
    def primary_sources(self) -> list[SourceConfig]:
        return [s for s in self.source if not s.shadow]


def _check_steps(steps: list[ChannelConfig], context: list[str]) -> None:
    """Unique names; ``after`` names an earlier step (so no cycles); ``at.column`` is carried
    on the candidate (``fields.context``); ``when`` names an existing other step."""
    names = [s.step for s in steps]
    if len(set(names)) != len(names):
        raise ValueError(
            f"channels: step names must be unique (a second step on a channel needs a "
            f"`name:`), got {names}"
        )
    for i, s in enumerate(steps):
        if s.after is not None and s.after.step not in names[:i]:
            where = "a later step" if s.after.step in names else "no step"
            raise ValueError(
                f"channels[{i}] ({s.step}): after.step {s.after.step!r} is {where}; "
                f"it must name an earlier step of {names[:i]}"
            )
        if s.at is not None and s.at.column not in context:
            raise ValueError(
                f"channels[{i}] ({s.step}): at.column {s.at.column!r} must be in "
                f"fields.context (the candidate carries it), got {context}"
            )
        for ref in s.condition_steps:
            if ref not in names or ref == s.step:
                raise ValueError(
                    f"channels[{i}] ({s.step}): when: {s.when!r} names no other step of {names}"
                )


def _fill_shares(items: list[Any], where: str) -> None:
    """One item defaults to 100%; several must say their shares, summing to 100."""
    if len(items) == 1 and items[0].traffic is None:
        items[0].traffic = 100.0
        return
    if not items:
        return
    missing = [i for i, item in enumerate(items) if item.traffic is None]
    if missing:
        raise ValueError(f"{where}: every entry needs `traffic:` when there are several")
    total = sum(item.traffic for item in items)
    if abs(total - 100.0) > 1e-6:
        raise ValueError(f"{where}: traffic shares must sum to 100, got {total:g}")


# --- loading ------------------------------------------------------------------------------


def format_validation_error(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = key_path(prefix + tuple(err["loc"]))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not part of the schema)"
        got = err.get("input")
        shown = (
            ""
            if err["type"] in ("missing", "extra_forbidden") or isinstance(got, dict)
            else f" (got {got!r})"
        )
        lines.append(f"{loc}: {msg}{shown}")
    return lines


def _component_options(program: ProgramConfig) -> list[str]:
    """Second pass: each component's options against its plugin's Options model."""
    from ceap.plugins import channels, connectors, filters, scorers

    groups: list[tuple[str, Any, list[Component]]] = [
        ("source", connectors, program.source),
        ("enrich", connectors, program.enrich),
        ("filters", filters, program.filters),
        ("scoring.models", scorers, program.scoring.models),
        ("channels", channels, program.channels),
    ]
    if program.events is not None:
        groups.append(("events", connectors, [program.events]))
    errors: list[str] = []
    for where, registry, items in groups:
        for i, item in enumerate(items):
            prefix = (where,) if where == "events" else (*where.split("."), i)
            try:
                cls = registry.get(item.type)
            except CeapError as exc:
                errors.append(f"{key_path((*prefix, 'type'))}: {exc}")
                continue
            raw = item.options if item.options is not None else {}
            if isinstance(raw, BaseModel):
                continue
            try:
                item.options = cls.Options.model_validate(raw)
            except ValidationError as exc:
                errors.extend(format_validation_error(exc, (*prefix, "options")))
    return errors


def parse_program(data: Any, source: str = "<config>") -> ProgramConfig:
    """Validates a parsed YAML document; raises ConfigError naming ``source`` and keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of program settings at the top level")
    try:
        program = ProgramConfig.model_validate(data)
    except ValidationError as exc:
        lines = format_validation_error(exc)
        raise ConfigError(f"{source}: invalid program config:\n  " + "\n  ".join(lines)) from None
    errors = _component_options(program)
    if errors:
        raise ConfigError(f"{source}: invalid program config:\n  " + "\n  ".join(errors))
    return program


def load_program(path: str | Path) -> ProgramConfig:
    path = Path(path)
    try:
        data = read_yaml(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such program config") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_program(data, str(path))


def program_paths(config_dir: str | Path) -> list[Path]:
    """Every program config in a directory, sorted by name."""
    return sorted(p for p in Path(config_dir).glob("*.yaml") if not p.name.startswith("_"))
