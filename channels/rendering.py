"""Message text from Jinja2 templates (docs/architecture.md, "Program YAML").

A message's template is looked up, first in ``<config-dir>/templates/`` and then among the
built-ins in ``channels/templates/``, as the first of

    <template>.<channel>.<locale>.j2, <template>.<channel>.j2, <template>.j2,
    <action>.<channel>.<locale>.j2, <action>.<channel>.j2, <action>.j2, generic.j2

(``template`` is the channel's ``template:``; without one the program's action picks the
built-in generic text). A rendered text whose first line is ``Subject: ...`` gives the
message its subject (email, push titles); the rest is the body.

Templates are written by other teams, so they are untrusted: they render in Jinja2's
``ImmutableSandboxedEnvironment`` (no attribute starting with ``_``, no mutation of what
they are given, so ``cycler.__init__.__globals__.os`` is refused), HTML templates
(``*.html.j2``) autoescape, and ``check_templates`` refuses at load a ``template:`` that
does not exist, does not compile or reaches outside the sandbox, naming the file.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ceap.errors import ConfigError
from channels.messages import Message

BUILTIN = Path(__file__).parent / "templates"


@lru_cache(maxsize=16)
def environment(config_dir: Path | None) -> jinja2.Environment:
    paths = [str(config_dir / "templates")] if config_dir else []
    return ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader([*paths, str(BUILTIN)]),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
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
    """(subject or None, body) of ``message``. A template that reaches outside the sandbox
    raises ``jinja2.exceptions.SecurityError``: the row fails with that reason."""
    text = _template(config_dir, tuple(candidates(message))).render(message.variables())
    first, _, rest = text.partition("\n")
    if first.startswith("Subject:"):
        return first.removeprefix("Subject:").strip(), rest.strip()
    return None, text.strip()


def render_html(message: Message, config_dir: Path | None) -> str | None:
    """The HTML part of ``message``: the ``.html.j2`` twin of the text template it renders
    with (``review_request.email.j2`` -> ``review_request.email.html.j2``), autoescaped;
    None when that template has no twin (a text-only message, never another template's
    HTML)."""
    text = _template(config_dir, tuple(candidates(message)))
    html = _twin(config_dir, text.name)
    return html.render(message.variables()).strip() if html is not None else None


@lru_cache(maxsize=1024)
def _twin(config_dir: Path | None, name: str) -> jinja2.Template | None:
    try:
        return environment(config_dir).get_template(name.removesuffix(".j2") + ".html.j2")
    except jinja2.TemplateNotFound:
        return None


def check_templates(program: Any, config_dir: Path | None) -> None:
    """Refuses, before anything is queued or sent, each channel ``template:`` of ``program``
    (a ProgramConfig) that has no file (``../x`` included: names are plain words), does not
    compile, reads an attribute starting with ``_`` or fails a render on a sample message
    inside the sandbox. Locale variants (``<template>.<channel>.<locale>.j2``) are checked
    too. Raises ConfigError naming the program, the channel and the file."""
    env = environment(config_dir)
    listed = set(env.list_templates(extensions=["j2"]))
    from ceap.plugins import channels

    for channel in program.channels:
        name = channel.template
        if name is None or not getattr(channels.get(channel.type), "renders", True):
            continue
        where = f"program {program.program}, channel {channel.type}: template {name!r}"
        own = sorted(t for t in listed if t.startswith(f"{name}.{channel.type}."))
        files = own or [t for t in (f"{name}.j2", f"{name}.html.j2") if t in listed]
        if not files:
            looked = (
                f"{config_dir / 'templates'} and the built-ins" if config_dir else "the built-ins"
            )
            raise ConfigError(
                f"{where} not found: looked for {name}.{channel.type}.j2 and {name}.j2 in {looked}"
            )
        for file in files:
            _check_one(env, file, where, _sample(program, channel.type, name))


def _check_one(env: jinja2.Environment, file: str, where: str, sample: Message) -> None:
    try:
        source = env.loader.get_source(env, file)[0]
        tree = env.parse(source, name=file)
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            attr = (
                node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
            )
            if isinstance(attr, str) and attr.startswith("_"):
                raise jinja2.exceptions.SecurityError(
                    f"access to attribute {attr!r} is not allowed"
                )
        template = env.get_template(file)
    except jinja2.exceptions.SecurityError as exc:
        raise ConfigError(f"{where}: {file} reaches outside the template sandbox: {exc}") from None
    except jinja2.exceptions.TemplateSyntaxError as exc:
        raise ConfigError(f"{where}: {file} line {exc.lineno}: {exc.message}") from None
    try:
        template.render(sample.variables())
    except jinja2.exceptions.SecurityError as exc:
        raise ConfigError(f"{where}: {file} reaches outside the template sandbox: {exc}") from None
    except Exception:  # noqa: BLE001, S110 - a sample value a real row would not have
        pass


def _sample(program: Any, channel: str, template: str) -> Message:
    """A message with every context column the program carries, for the load-time render."""
    context = {column: "" for column in program.fields.context}
    return Message(
        key="sample", program=program.program, customer_id="C0", subject_id="S0",
        channel=channel, action=program.action, subject_type=program.subject_type,
        template=template, context=context, recipient={}, send_after="1970-01-01T00:00:00Z",
    )  # fmt: skip
