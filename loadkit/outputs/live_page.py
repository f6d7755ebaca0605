"""The live view's page (`loadkit run --ui`): one self-contained HTML file.

Pure: the page holds no run data (it receives everything over its event
stream, as JSON, and writes it with `textContent` and SVG attributes, never
as markup), so rendering it takes no input. It shares the report's style
sheet (style.css.j2) and chart palette (canvas.COLOURS, the phase shades of
charts.py), so the pictures look the same live and afterwards; the report
draws with matplotlib, which cannot run in a browser, so the live charts
are drawn by the page's own small script (templates/live.js.j2). Its
Content-Security-Policy allows that one script (by its hash) and
connections to the page's own origin only.
"""

from __future__ import annotations

import base64
import hashlib
import json

import jinja2
from markupsafe import Markup

from loadkit.outputs.canvas import COLOURS

__all__ = ["render_live_page"]

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("loadkit.outputs", "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
# charts.py shades phases in these (warm-ups grey; others alternate).
PHASE_SHADES = {"warmup": "#999999", "even": "#dd8452", "odd": "#4c72b0"}


def render_live_page() -> str:
    style = {"colours": COLOURS, "phases": PHASE_SHADES}
    script = _ENV.get_template("live.js.j2").render(
        style=Markup(json.dumps(style).replace("<", "\\u003c")))
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return _ENV.get_template("live.html.j2").render(script=Markup(script),
                                                    script_hash=f"sha256-{digest}")
