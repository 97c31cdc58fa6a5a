"""Shared chart settings: offline Vega rendering (see :mod:`diffred.core.display`) and a house theme.

Importing this module is enough: chapters ``import diffred.core.plots`` and build altair charts with
their own module's chart functions.
"""
from __future__ import annotations

import altair as alt

from diffred.core.display import enable_offline_altair

PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6",
           "#9d755d", "#bab0ac", "#eeca3b"]


def _theme() -> dict:
    return {"config": {"view": {"continuousWidth": 320, "continuousHeight": 220, "stroke": None},
                       "range": {"category": PALETTE},
                       "axis": {"labelFontSize": 11, "titleFontSize": 12, "gridOpacity": 0.5,
                                # drop tick labels that would touch ("0.10.2")
                                "labelOverlap": "greedy", "labelSeparation": 4},
                       "legend": {"labelFontSize": 11, "titleFontSize": 12},
                       "title": {"fontSize": 13, "anchor": "start"}}}


def setup() -> None:
    """Offline renderer, house theme, and no 5,000-row limit (charts are built from tidy tables)."""
    enable_offline_altair()
    try:
        alt.theme.register("diffred", enable=True)(_theme)
    except AttributeError:  # altair < 5.5
        alt.themes.register("diffred", _theme)
        alt.themes.enable("diffred")
    alt.data_transformers.disable_max_rows()


setup()
