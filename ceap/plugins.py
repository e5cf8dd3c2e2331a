"""The four plugin registries. Built-ins register with ``@connectors.register("parquet")``.

Each kind's base class and built-ins are named, not imported: they live in the layers above
(``connectors/``, ``transforms/filters/``, ``scorers/``, ``channels/``) and are imported on
first use, so ``ceap/`` stays the ground floor.
"""

from __future__ import annotations

from ceap.registry import Registry

connectors: Registry = Registry("connector", "connectors.base:Connector", "connectors.builtin")
filters: Registry = Registry(
    "filter", "transforms.filters.base:Filter", "transforms.filters.builtin"
)
scorers: Registry = Registry("scorer", "scorers.base:Scorer", "scorers.builtin")
channels: Registry = Registry("channel", "channels.base:Channel", "channels.builtin")
