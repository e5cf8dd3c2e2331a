"""Message text from Jinja2 templates (docs/architecture.md, "Program YAML").

A message's template is looked up, first in ``<config-dir>/templates/`` and then among the
built-ins in ``channels/templates/``, as the first of

    <template>.<channel>.<locale>.j2, <template>.<channel>.j2, <template>.j2,
    <action>.<channel>.<locale>.j2, <action>.<channel>.j2, <action>.j2, generic.j2

(``template`` is the channel's ``template:``; without one the program's action picks the
built-in generic text). A rendered text whose first line is ``Subject: ...`` gives the
message its subject (email, push titles); the rest is the body.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

from channels.base import Message

BUILTIN = Path(__file__).parent / "templates"


@lru_cache(maxsize=16)
def environment(config_dir: Path | None) -> jinja2.Environment:
    paths = [str(config_dir / "templates")] if config_dir else []
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([*paths, str(BUILTIN)]),
        autoescape=False,  # plain text; HTML templates escape explicitly with |e
        undefined=jinja2.ChainableUndefined,  # a context field a row lacks renders empty
        keep_trailing_newline=False,
    )


def candidates(message: Message) -> list[str]:
    locale = message.recipient.get("locale") or message.context.get("locale")
    names = []
    for stem in (message.template, message.action):
        if not stem:
            continue
        if locale:
            names.append(f"{stem}.{message.channel}.{locale}.j2")
        names += [f"{stem}.{message.channel}.j2", f"{stem}.j2"]
    return [*names, "generic.j2"]


@lru_cache(maxsize=1024)
def _template(config_dir: Path | None, names: tuple[str, ...]) -> jinja2.Template:
    return environment(config_dir).select_template(list(names))


def render(message: Message, config_dir: Path | None) -> tuple[str | None, str]:
    """(subject or None, body) of ``message``."""
    text = _template(config_dir, tuple(candidates(message))).render(message.variables())
    first, _, rest = text.partition("\n")
    if first.startswith("Subject:"):
        return first.removeprefix("Subject:").strip(), rest.strip()
    return None, text.strip()
