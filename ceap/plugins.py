"""The four plugin registries. Built-ins register with ``@connectors.register("parquet")``."""

from __future__ import annotations

from ceap.registry import Registry
from channels.base import Channel
from connectors.base import Connector
from scorers.base import Scorer
from transforms.filters.base import Filter

connectors: Registry = Registry("connector", Connector)
filters: Registry = Registry("filter", Filter)
scorers: Registry = Registry("scorer", Scorer)
channels: Registry = Registry("channel", Channel)
