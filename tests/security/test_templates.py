"""Message templates are written by other teams: they render in Jinja2's immutable sandbox,
and a template that names no file, does not compile or reaches outside the sandbox stops a
run at load, naming the template, instead of running code or falling back silently."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from ceap.errors import ConfigError
from channels.base import Message
from channels.rendering import check_templates, environment, render
from configs.schema import parse_program, read_yaml

SSTI = "{{ cycler.__init__.__globals__.os.popen('touch %s').read() }}"
PROGRAM = """
program: reviews
action: review
subject_type: product
source: {type: parquet, options: {path: unused}}
fields: {customer_id: customer_id, subject_id: product_id, context: [title]}
scoring: {models: [{id: m, type: column, options: {column: score}}]}
channels: [{type: email, template: TEMPLATE}, {type: whatsapp, template: approved_at_meta}]
"""


def program(template: str = "mine"):
    return parse_program(read_yaml(PROGRAM.replace("TEMPLATE", template)), "reviews.yaml")


def config_dir(tmp_path: Path, **files: str) -> Path:
    (tmp_path / "templates").mkdir(exist_ok=True)
    for name, text in files.items():
        (tmp_path / "templates" / name).write_text(text)
    environment.cache_clear()  # one environment per directory, cached
    return tmp_path


def message(template: str, customer_id: str = "C1") -> Message:
    return Message(
        key="k", program="reviews", customer_id=customer_id, subject_id="P1", channel="email",
        action="review", subject_type="product", template=template, context={"title": "Kettle"},
        recipient={}, send_after="2026-11-25T10:00:00Z",
    )  # fmt: skip


def test_a_template_reaching_for_os_is_refused_at_load_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    configs = config_dir(tmp_path, **{"mine.email.j2": SSTI % marker})
    with pytest.raises(ConfigError) as refused:
        check_templates(program(), configs)
    said = str(refused.value)
    assert "channel email: template 'mine'" in said and "mine.email.j2" in said
    assert "outside the template sandbox" in said and "access to attribute '__" in said
    assert not marker.exists()


def test_a_template_that_hides_the_attack_from_the_load_check_is_stopped_when_rendered(tmp_path):
    """Attribute names built at run time pass the static check: the sandbox refuses them."""
    marker = tmp_path / "pwned"
    attack = (
        "{% if customer_id == 'target' %}{% set u = '_' ~ '_init_' ~ '_' %}"
        "{% set g = '_' ~ '_globals_' ~ '_' %}"
        "{{ (cycler|attr(u)|attr(g))['os'].popen('touch " + str(marker) + "').read() }}"
        "{% endif %}Hello"
    )
    configs = config_dir(tmp_path, **{"mine.email.j2": attack})
    check_templates(program(), configs)  # the sample message takes the harmless branch
    assert render(message("mine"), configs) == (None, "Hello")
    with pytest.raises(jinja2.exceptions.TemplateError):  # unsafe: undefined, never called
        render(message("mine", customer_id="target"), configs)
    assert not marker.exists()


def test_a_template_cannot_change_what_it_is_given(tmp_path):
    configs = config_dir(tmp_path, **{"mine.email.j2": "{{ recipient.update({'x': 1}) }}"})
    with pytest.raises(jinja2.exceptions.SecurityError):
        render(message("mine"), configs)


@pytest.mark.parametrize("name", ["nosuch", "review_reqest"])
def test_a_template_that_does_not_exist_is_a_config_error_not_a_fallback(tmp_path, name):
    configs = config_dir(tmp_path)
    with pytest.raises(
        ConfigError, match=f"template '{name}' not found: looked for {name}.email.j2"
    ):
        check_templates(program(name), configs)


@pytest.mark.parametrize("name", ["../x", "x/y", ".hidden", "a b"])
def test_a_template_name_is_a_word_never_a_path(name):
    with pytest.raises(ConfigError, match=r"channels\[0\]\.template"):
        program(name)


def test_a_syntax_error_names_the_file_and_line(tmp_path):
    configs = config_dir(tmp_path, **{"mine.email.j2": "Hi\n{{ title "})
    with pytest.raises(ConfigError, match=r"mine.email.j2 line 2"):
        check_templates(program(), configs)


def test_built_in_and_own_templates_pass_and_html_parts_autoescape(tmp_path):
    configs = config_dir(
        tmp_path, **{"mine.email.j2": "Subject: Rate {{ title }}\nHi", "mine.email.html.j2": "<p>{{ title }}</p>"}
    )  # fmt: skip
    check_templates(program(), configs)
    check_templates(program("review_request"), None)  # a built-in
    html = (
        environment(configs).get_template("mine.email.html.j2").render(title="<script>x</script>")
    )
    assert html == "<p>&lt;script&gt;x&lt;/script&gt;</p>"
    assert render(message("mine"), configs) == ("Rate Kettle", "Hi")  # text stays as written


def test_dispatch_refuses_to_start_with_an_unsafe_template(tmp_path):
    from channels.dispatcher import dispatch

    configs = config_dir(tmp_path, **{"mine.email.j2": SSTI % (tmp_path / "pwned")})
    (configs / "reviews.yaml").write_text(PROGRAM.replace("TEMPLATE", "mine"))
    with pytest.raises(ConfigError, match="outside the template sandbox"):
        dispatch(f"sqlite:///{tmp_path / 'ceap.db'}", configs)
    assert not (tmp_path / "pwned").exists()
