"""report.html: a plain, self-contained page (jinja2, autoescaped, no network).

The full report with charts is a later issue; this page already shows the
verdict first, the SLO table and the latency summaries. Everything that came
from a server is escaped by jinja2's autoescape.
"""

from __future__ import annotations

import jinja2

from loadkit.report.format import interval, quantity

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("loadkit.report", "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENV.filters["quantity"] = quantity
_ENV.filters["interval"] = interval


def render_html(result: dict) -> str:
    return _ENV.get_template("report.html.j2").render(r=result)
