"""Reading a program config's YAML: YAML 1.2 booleans, duplicate keys refused (with the
key's path and both lines), and bounded, since configs are written by other teams: at most
``MAX_YAML_CHARS`` characters, ``MAX_YAML_ALIASES`` aliases and ``MAX_YAML_NODES`` nodes with
every alias expanded (an alias bomb is refused before anything is built)."""

from __future__ import annotations

import re
from typing import Any

import yaml

MAX_YAML_CHARS = 1 << 20
"""A program config is a page of YAML; a megabyte is a mistake or an attack."""
MAX_YAML_ALIASES = 100
MAX_YAML_NODES = 100_000
"""Nodes of the document with every alias expanded: what validation walks. An alias bomb
(9 levels of 10 aliases in 99 lines) expands to 10^9 and used to run out of memory."""


class _Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. PyYAML's 1.1 rules read the contract's ``on:``
    key (and yes/no/off) as booleans, which would silently break ``enrich: [{on: ...}]``.
    Aliases are counted as they are composed (at most ``MAX_YAML_ALIASES``)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_YAML_ALIASES} aliases (*name)")
        return super().compose_node(parent, index)


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class DuplicateKeyError(yaml.YAMLError):
    """A mapping gives the same key twice. YAML 1.2 forbids it; PyYAML would keep the last
    one silently (``ranking: {top_n: 5, top_n: 50}`` would run with 50, a second
    ``filters:`` block would replace the first)."""


def read_yaml(text: str):
    """Parses one YAML document with 1.2 booleans, refusing duplicate keys (raises
    ``DuplicateKeyError``, a ``yaml.YAMLError``, naming the key's path and lines)."""
    if len(text) > MAX_YAML_CHARS:
        raise yaml.YAMLError(f"{len(text):,} characters; a config may have {MAX_YAML_CHARS:,}")
    loader = _Yaml12Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_YAML_NODES:
            raise yaml.YAMLError(
                f"with its aliases expanded the document has {size:,} nodes or more; at most "
                f"{MAX_YAML_NODES:,} are allowed (an alias bomb?)"
            )
        _unique_keys(loader, node, (), set())
        return loader.construct_document(node)
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes under ``node`` counting every alias as a copy, memoised per node (so it costs
    one visit per distinct node) and capped just past the limit."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a recursive alias counts once
    size = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    for child in children:
        size = min(size + _expanded_size(child, memo), MAX_YAML_NODES + 1)
    memo[id(node)] = size
    return size


def _unique_keys(loader: yaml.SafeLoader, node: yaml.Node, path: tuple, seen: set[int]) -> None:
    """Walks the composed document (before any key can overwrite another) with the path to
    each node. Keys brought in by a ``<<`` merge may be overridden, as YAML intends."""
    if id(node) in seen:  # an alias: its anchor's node was checked where it was defined
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _unique_keys(loader, item, (*path, i), seen)
    elif isinstance(node, yaml.MappingNode):
        first: dict[Any, yaml.Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                _unique_keys(loader, value_node, path, seen)
                continue
            key = _key_of(loader, key_node)
            if key in first:
                raise DuplicateKeyError(_duplicate((*path, str(key)), first[key], key_node))
            first[key] = key_node
            _unique_keys(loader, value_node, (*path, str(key)), seen)


def _key_of(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    """The key as the built dict holds it (``1`` and ``0x1`` are one key); a complex key
    (``? [a, b]``) is never taken for another."""
    return loader.construct_object(node) if isinstance(node, yaml.ScalarNode) else (id(node),)


def _duplicate(path: tuple, first: yaml.Node, again: yaml.Node) -> str:
    a, b = first.start_mark, again.start_mark
    where = (
        f"lines {a.line + 1} and {b.line + 1}"
        if a.line != b.line
        else f"line {a.line + 1}, columns {a.column + 1} and {b.column + 1}"
    )
    return (
        f"duplicate key {key_path(path)!r} ({where}); a key may appear once per mapping "
        "(YAML 1.2), keep one of them"
    )


def key_path(parts: tuple[Any, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"
