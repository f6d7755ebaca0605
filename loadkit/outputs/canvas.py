"""The canvas every loadkit chart is drawn on: style, figure, SVG output.

Shared by the run report (charts.py), comparisons and capacity reports.
Static SVG needs no JavaScript, and matplotlib escapes every text it writes,
so server-derived labels cannot inject markup; `svg()` still refuses any
output with a script or an event handler. Text is kept as SVG `<text>`
(svg.fonttype none): smaller than glyph paths, and searchable. Math parsing
is off, so a `$` in a server's label is just a dollar. matplotlib is
imported lazily: only rendering a report pays for it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loadkit.outputs.decimate import Envelope

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
           "#7f7f7f"]
_RC = {"svg.fonttype": "none", "text.parse_math": False, "font.family": "sans-serif",
       "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"], "font.size": 9,
       "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
       "grid.alpha": 0.3, "legend.fontsize": 8, "legend.frameon": False,
       "path.simplify": True}
_UNSAFE_SVG = re.compile(r"<\s*script|<[^>]*\son[a-z]+\s*=|javascript:", re.IGNORECASE)
WIDTH = 10.0


def svg(name: str, draw: Callable[..., Figure | None], *args: object) -> str | None:
    """Run `draw(*args)` under the report's style; its figure as SVG markup."""
    import matplotlib
    from cycler import cycler

    rc: dict[Any, Any] = {**_RC, "svg.hashsalt": f"loadkit-{name}",
                          "axes.prop_cycle": cycler(color=COLOURS)}
    with matplotlib.rc_context(rc):
        fig = draw(*args)
        if fig is None:
            return None
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # no XML declaration or DOCTYPE inside HTML
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.DOTALL)
    if _UNSAFE_SVG.search(text):
        raise ValueError(f"chart {name}: refusing SVG with a script or event handler")
    return text


def figure(rows: int, height: float = 2.4, sharex: bool = True) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, 0.6 + height * rows), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=sharex, squeeze=False)[:, 0]
    return fig, list(axes)


def envelope(ax: Axes, env: Envelope, div: float, label: str, colour: str,
              line: str = "mean") -> None:
    """A line through the bucket means (or highs), shaded from low to high."""
    x = env.t / div
    if env.decimated:
        ax.fill_between(x, env.low, env.high, color=colour, alpha=0.25, lw=0)
        label = f"{label} ({'highest' if line == 'high' else 'mean'}; band: min–max per " \
                f"{_bucket(env)})"
    ax.plot(x, env.high if line == "high" else env.mean, color=colour, lw=1.0, label=label)


def _bucket(env: Envelope) -> str:
    width = (env.t[-1] - env.t[0]) / max(len(env) - 1, 1)
    return f"{width:.3g} s" if width < 120 else f"{width / 60:.3g} min"
