"""The dashboard's charts, drawn on the server as SVG by pygal: no JavaScript (pygal's
scripts are taken out), one drawing per colour scheme, which the page picks with
``<picture>`` and ``prefers-color-scheme``. Every chart's figures are also in a table on the
page: the picture is for the eye, the table for reading."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pygal
from pygal.style import Style

from ..sending.stats import OUTCOMES, Overview

THEMES = ("light", "dark")
_FONT = '-apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, Helvetica, Arial, sans-serif'
_STYLES = {
    "light": Style(
        background="transparent",
        plot_background="transparent",
        foreground="#374151",
        foreground_strong="#111827",
        foreground_subtle="#d1d5db",
        font_family=_FONT,
        colors=("#1d4ed8", "#047857", "#b45309", "#b91c1c", "#6b7280", "#7c3aed"),
    ),
    "dark": Style(
        background="transparent",
        plot_background="transparent",
        foreground="#d1d5db",
        foreground_strong="#f9fafb",
        foreground_subtle="#4b5563",
        font_family=_FONT,
        colors=("#93c5fd", "#6ee7b7", "#fcd34d", "#fca5a5", "#d1d5db", "#c4b5fd"),
    ),
}
#: The outcomes' colours in the editions' chart (sent green, failures red, ...).
_OUTCOME_COLORS = {
    "light": ("#047857", "#b45309", "#b91c1c", "#7c3aed", "#6b7280"),
    "dark": ("#6ee7b7", "#fcd34d", "#fca5a5", "#c4b5fd", "#d1d5db"),
}


def _options(theme: str) -> dict[str, Any]:
    return {
        "style": _STYLES[theme],
        "js": [],  # no script: the SVG is a picture
        "width": 800,
        "height": 320,
        "legend_at_bottom": True,
        "legend_at_bottom_columns": 5,
        "truncate_label": -1,
        "x_label_rotation": 0,
        "print_values": False,
        "margin": 12,
    }


#: The configuration script pygal writes into every chart (it is for its tooltips).
_SCRIPT = re.compile(r"<script[^>]*>.*?</script>", re.DOTALL)


def _svg(chart: Any) -> str:
    return _SCRIPT.sub("", chart.render(is_unicode=True))


def _day_labels(days: list[str], every: int) -> list[str]:
    """MM-DD under every ``every``-th day, counted back from the last; blank elsewhere."""
    last = len(days) - 1
    return [day[5:] if (last - i) % every == 0 else "" for i, day in enumerate(days)]


def subscribers_chart(figures: Overview, theme: str) -> str:
    days = figures.subscriber_days
    chart = pygal.Line(
        **_options(theme),
        show_dots=False,
        title="Subscribers per day",
    )
    chart.x_labels = _day_labels([d["day"] for d in days], 15)
    for series in ("joined", "confirmed", "unsubscribed", "bounced"):
        chart.add(series, [d[series] for d in days])
    return _svg(chart)


def editions_chart(figures: Overview, theme: str) -> str:
    style = Style(**{**_STYLES[theme].__dict__, "colors": _OUTCOME_COLORS[theme]})
    chart = pygal.StackedBar(
        **{**_options(theme), "style": style},
        title="Messages per edition",
    )
    editions = [e["edition"] for e in figures.editions]
    chart.x_labels = _day_labels(editions, max(1, len(editions) // 8))
    for outcome in OUTCOMES:
        chart.add(outcome, [e[outcome] for e in figures.editions])
    return _svg(chart)


def feedback_chart(figures: Overview, theme: str) -> str:
    days = figures.feedback_days
    chart = pygal.Bar(**_options(theme), title="More / less like this, per day")
    chart.x_labels = _day_labels([d["day"] for d in days], 5)
    chart.add("more like this", [d["more"] for d in days])
    chart.add("less like this", [-d["less"] for d in days])
    return _svg(chart)


CHARTS: dict[str, Callable[[Overview, str], str]] = {
    "subscribers": subscribers_chart,
    "editions": editions_chart,
    "feedback": feedback_chart,
}
