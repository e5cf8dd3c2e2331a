"""``python run.py report --program P [--date D] [--output report.html]``: a campaign report as
one self-contained HTML file (Jinja2; charts embedded as base64 PNG, no network needed).

Sections: the funnel per stage with removal reasons (latest run, or latest run on D), score
distributions per model/arm, outbox and delivery status per channel, response rates per arm
and per channel, engagement per channel and arm (sent -> delivered -> opened -> clicked ->
responded, shadowed apart, bounces, complaints, unsubscribes) and multi-channel attribution
(sent rows and clicks as touches; see ``reports.data`` for the definitions).
The numbers are also embedded as JSON (``<script id="ceap-report-data">``) for machines.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from pathlib import Path

from jinja2 import Environment

from ceap.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from configs.programs import declared_names, default_config_dir
from reports import charts
from reports.data import STAGES, ReportData, load

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>CEAP report: {{ d.program }}{% if d.day %} on {{ d.day }}{% endif %}</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
 table { border-collapse: collapse; margin: .5em 0 1.5em; }
 th, td { border-bottom: 1px solid #ddd; padding: .25em .8em; text-align: left; }
 td.n { text-align: right; font-variant-numeric: tabular-nums; }
 img { max-width: 100%; display: block; margin: .5em 0; }
 .muted { color: #777; }
</style></head><body>
<h1>{{ d.program }}{% if d.day %} <span class="muted">candidates created on {{ d.day }}</span>{% endif %}</h1>
<p class="muted">Generated {{ d.generated_at }} from the CEAP store.
{{ "{:,}".format(d.candidates) }} candidates in scope.</p>

<h2 id="funnel">Funnel</h2>
{% if d.run %}
<p>Run <code>{{ d.run.run_id }}</code> ({{ d.run.mode }}), started {{ d.run.started_at }};
{{ "{:,}".format(d.run.funnel.read) }} rows read, {{ "{:,}".format(d.run.funnel.candidates) }} candidates,
{% if d.run.funnel.adds_up %}adds up{% else %}DOES NOT ADD UP{% endif %}.</p>
{{ img(images.funnel, "funnel") }}
<table id="funnel-table"><tr><th>stage</th><th>reason</th><th>removed</th><th>remaining</th></tr>
{% for s in d.funnel %}<tr><td>{{ s.stage }}</td><td>{{ s.detail }}</td>
<td class="n">{{ "{:,}".format(s.removed) }}</td><td class="n">{{ "{:,}".format(s.remaining) }}</td></tr>
{% endfor %}<tr><th>candidates</th><td></td><td></td><td class="n">{{ "{:,}".format(d.run.funnel.candidates) }}</td></tr>
</table>
{% if d.run.funnel.queued %}<table><tr><th>queued channel</th><th>status</th><th>rows</th></tr>
{% for q in d.run.funnel.queued %}<tr><td>{{ q.channel }}</td><td>{{ q.status }}</td><td class="n">{{ "{:,}".format(q.rows) }}</td></tr>
{% endfor %}</table>{% endif %}
{% else %}<p>No finished run recorded{% if d.day %} on {{ d.day }}{% endif %}.</p>{% endif %}
{% if d.runs|length > 1 %}<details><summary>{{ d.runs|length }} runs</summary><table>
<tr><th>run</th><th>mode</th><th>started</th><th>finished</th><th>status</th></tr>
{% for r in d.runs %}<tr><td><code>{{ r.run_id }}</code></td><td>{{ r.mode }}</td><td>{{ r.started_at }}</td>
<td>{{ r.finished_at }}</td><td>{{ r.status }}</td></tr>{% endfor %}</table></details>{% endif %}

<h2 id="scores">Scores per model and arm</h2>
{{ img(images.scores, "score distribution") }}
<table id="arms-table"><tr><th>model</th><th>arm</th><th>candidates</th><th>mean</th><th>p50</th><th>p90</th>
<th>responses</th><th>response rate</th></tr>
{% for a in d.arms %}<tr><td>{{ a.model_id }}</td><td>{{ a.treatment }}</td><td class="n">{{ "{:,}".format(a.candidates) }}</td>
<td class="n">{{ num(a.mean_score) }}</td><td class="n">{{ num(a.p50_score) }}</td><td class="n">{{ num(a.p90_score) }}</td>
<td class="n">{{ "{:,}".format(a.responses) }}</td><td class="n">{{ pct(a.response_rate) }}</td></tr>
{% endfor %}</table>
{{ img(images.arm_rates, "response rate per arm") }}

<h2 id="delivery">Outbox and delivery per channel</h2>
{{ img(images.outbox, "delivery status") }}
<table id="outbox-table"><tr><th>channel</th><th>status</th><th>rows</th></tr>
{% for o in d.outbox %}<tr><td>{{ o.channel }}</td><td>{{ o.status }}</td><td class="n">{{ "{:,}".format(o.rows) }}</td></tr>
{% endfor %}</table>
<table id="channels-table"><tr><th>channel</th><th>reached (sent)</th><th>responses after</th><th>response rate</th><th>shadowed (reached nobody)</th></tr>
{% for c in d.channels %}<tr><td>{{ c.channel }}</td><td class="n">{{ "{:,}".format(c.touched) }}</td>
<td class="n">{{ "{:,}".format(c.responses) }}</td><td class="n">{{ pct(c.response_rate) }}</td>
<td class="n">{{ "{:,}".format(c.shadowed) }}</td></tr>
{% endfor %}</table>
{{ img(images.channel_rates, "response rate per channel") }}

<h2 id="engagement">Engagement per channel and arm</h2>
<p>Candidates at each stage, with the share of those sent. An open counts as delivered and a
click as opened; responded means after the first send on the channel. Shadowed candidates
were only rehearsed: they reached nobody and are counted apart.</p>
{{ img(images.engagement, "engagement per channel and arm") }}
<table id="engagement-table"><tr><th>channel</th><th>arm</th>{% for s in stages %}<th>{{ s }}</th>{% endfor %}
<th>shadowed (reached nobody)</th><th>bounced</th><th>complained</th><th>unsubscribed</th></tr>
{% for e in d.engagement %}<tr><td>{{ e.channel }}</td><td>{{ e.treatment }}</td>
{% for s in stages %}<td class="n">{{ "{:,}".format(e[s]) }}{% if s != "sent" and e.sent %} <span class="muted">{{ pct(e[s] / e.sent) }}</span>{% endif %}</td>{% endfor %}
<td class="n">{{ "{:,}".format(e.shadowed) }}</td><td class="n">{{ "{:,}".format(e.bounced) }}</td>
<td class="n">{{ "{:,}".format(e.complained) }}</td><td class="n">{{ "{:,}".format(e.unsubscribed) }}</td></tr>
{% endfor %}</table>

{% if d.steps %}<h2 id="journey">Journey</h2>
<p>Each step of the program, in order, and what became of its rows; responded counts the
candidates that responded after the step reached them.</p>
<div id="journey-picture" style="display:flex;flex-wrap:wrap;gap:.4em;align-items:stretch">
{% for s in d.steps %}<div style="border:1px solid #bbb;border-radius:6px;padding:.4em .7em;min-width:11em">
<b>{{ s.step }}</b> <span class="muted">{{ s.channel }}</span><br>
<span class="muted">{{ s.timing }}{% if s.when and s.when != "always" %}; when {{ s.when }}{% endif %}</span><br>
sent {{ "{:,}".format(s.sent) }}{% if s.shadowed %} · shadowed {{ "{:,}".format(s.shadowed) }}{% endif %}
· suppressed {{ "{:,}".format(s.suppressed) }} · responded {{ "{:,}".format(s.responded) }}
{% if s.waiting or s.pending %}<br><span class="muted">waiting {{ "{:,}".format(s.waiting) }} · pending {{ "{:,}".format(s.pending) }}</span>{% endif %}
</div>{% if not loop.last %}<div style="align-self:center">&rarr;</div>{% endif %}{% endfor %}
</div>
<table id="steps-table"><tr><th>step</th><th>channel</th><th>after</th><th>sent</th><th>shadowed</th>
<th>suppressed</th><th>failed</th><th>pending</th><th>waiting</th><th>responded</th><th>why suppressed or failed</th></tr>
{% for s in d.steps %}<tr><td>{{ s.step }}</td><td>{{ s.channel }}</td><td>{{ s.after or "" }}</td>
{% for k in ("sent", "shadowed", "suppressed", "failed", "pending", "waiting", "responded") %}<td class="n">{{ "{:,}".format(s[k]) }}</td>{% endfor %}
<td>{% for reason, n in s.reasons.items() %}{{ reason }}: {{ "{:,}".format(n) }}{% if not loop.last %}; {% endif %}{% endfor %}</td></tr>
{% endfor %}</table>{% endif %}

<h2 id="attribution">Attribution</h2>
<p>{{ "{:,}".format(d.responses) }} responses; {{ "{:,}".format(d.attributed) }} reached by a channel before
responding, {{ "{:,}".format(d.multi_touch_responses) }} of them by two or more channels
({{ pct(d.multi_touch_responses / d.attributed if d.attributed else 0) }}). Last touch credits the last
channel that reached the customer before the response (a send, or a click on what was sent);
multi-touch splits each response equally among the channels that reached it.</p>
{{ img(images.attribution, "attribution") }}
<table id="attribution-table"><tr><th>channel</th><th>last touch</th><th>share</th><th>multi-touch</th><th>share</th></tr>
{% for a in d.attribution %}<tr><td>{{ a.channel }}</td><td class="n">{{ "{:,}".format(a.last_touch) }}</td>
<td class="n">{{ pct(a.last_touch_share) }}</td><td class="n">{{ num(a.multi_touch, 2) }}</td>
<td class="n">{{ pct(a.multi_touch_share) }}</td></tr>
{% endfor %}</table>
<script type="application/json" id="ceap-report-data">{{ data_json }}</script>
</body></html>
"""


def _img(png: bytes | None, alt: str):
    from markupsafe import Markup

    if png is None:
        return Markup('<p class="muted">(no data)</p>')
    encoded = base64.b64encode(png).decode("ascii")
    return Markup(f'<img class="chart" alt="{alt}" src="data:image/png;base64,{encoded}">')


def _num(value, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _pct(value) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def render(data: ReportData) -> str:
    """The report as one HTML string (charts inline)."""
    images = {
        "funnel": charts.funnel(data.funnel),
        "scores": charts.score_histograms(data.scores),
        "arm_rates": charts.rates(data.arms, "treatment", "Response rate per arm"),
        "outbox": charts.outbox_status(data.outbox),
        "channel_rates": charts.rates(data.channels, "channel", "Response rate per channel"),
        "engagement": charts.engagement(data.engagement, STAGES),
        "attribution": charts.attribution(data.attribution),
    }
    env = Environment(autoescape=True)
    env.globals.update(img=_img, num=_num, pct=_pct)
    # JSON inside <script>: only "</" could end the element early.
    data_json = data.as_json().replace("</", "<\\/")
    from markupsafe import Markup

    return env.from_string(TEMPLATE).render(
        d=data, images=images, data_json=Markup(data_json), stages=STAGES
    )


def build_report(
    program: str, day: str | None = None, store: str = "sqlite", config_dir: str | None = None
) -> ReportData:
    from ceap.context import RunContext
    from stores.base import iso
    from stores.ports import require_roles
    from stores.spec import open_store

    s = open_store(store)
    try:
        require_roles(s, "report", store)
        return load(s, program, day, iso(RunContext.utcnow()), _plan(program, config_dir))
    finally:
        s.close()


def _plan(program: str, config_dir: str | None) -> list | None:
    """The program's journey steps from its config, or None when it cannot be read (the
    report still shows every step the store holds)."""
    from ceap.errors import CeapError
    from configs.programs import load_by_name
    from reports.steps import plan_of

    try:
        return plan_of(load_by_name(program, Path(config_dir or default_config_dir())))
    except CeapError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run.py report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--program", required=True)
    parser.add_argument("--date", help="report the candidates created on this day (YYYY-MM-DD)")
    parser.add_argument("--output", default=None, help="HTML file (default report-<program>.html)")
    parser.add_argument("--store", default=os.environ.get("CEAP_STORE", "sqlite"))
    parser.add_argument("--config-dir", "--config_dir", dest="config_dir", default=None)
    args = parser.parse_args(argv)
    if args.date:
        from datetime import date

        try:
            date.fromisoformat(args.date)
        except ValueError:
            print(f"ceap: --date must be YYYY-MM-DD, not {args.date!r}", file=sys.stderr)
            return EXIT_USAGE
    try:
        data = build_report(args.program, args.date, args.store, args.config_dir)
    except Exception as exc:  # noqa: BLE001 - reported, not a traceback
        print(f"ceap: report failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    known = declared_names(args.config_dir or default_config_dir())
    if args.program not in known and not (data.runs or data.candidates or data.responses):
        print(f"ceap: unknown program {args.program!r}: no config declares it and the store "
              f"holds no run, candidate or response of it (programs: {', '.join(known) or 'none'})",
              file=sys.stderr)  # fmt: skip
        return EXIT_FAILED
    output = Path(
        args.output or f"report-{args.program}{'-' + args.date if args.date else ''}.html"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(data), encoding="utf-8")
    print(
        f"report {args.program}: {data.candidates:,} candidates, {data.responses:,} responses "
        f"-> {output}"
    )
    return EXIT_OK
