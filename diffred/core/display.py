"""Offline display for the book: an Altair renderer, reader tables, and the Sphinx extension
that ships the Vega bundle.

Nothing here touches the network, at build time or when a page is viewed.

* ``diffred.core.display`` is a Sphinx extension (listed in ``_config.yml`` under
  ``sphinx.extra_extensions``). When an HTML build starts it writes
  ``_static/diffred-vega-bundle.js``: Vega, Vega-Lite and vega-embed bundled by
  ``vl_convert.javascript_bundle()`` (vl-convert-python ships them), wrapped in
  an IIFE so that none of the bundle's top-level names leak into the page
  (Sphinx pages also load jQuery, require.js for widgets, MathJax, ...). The
  bundle sets ``window.vegaEmbed`` / ``window.vega`` / ``window.vegaLite`` and
  fires a ``diffred:vega-ready`` event. Every page loads it with ``defer``.

* :func:`enable_offline_altair` registers and enables the Altair renderer
  ``"diffred"``. A chart's output is ``text/html`` (a ``<div>`` and an inline
  ``<script>`` that calls ``window.vegaEmbed`` once the bundle has loaded) plus
  the Vega-Lite JSON mimetype, so JupyterLab/VS Code can still draw it with
  their own renderers. No ``<script src="http...">`` is ever emitted.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from functools import cache
from pathlib import Path
from typing import Any

BUNDLE_NAME = "diffred-vega-bundle.js"
READY_EVENT = "diffred:vega-ready"
RENDERER_NAME = "diffred"
DEFAULT_EMBED_OPTIONS = {"renderer": "svg", "actions": False}

_counter = itertools.count()


# --------------------------------------------------------------------------
# The JavaScript bundle
# --------------------------------------------------------------------------
def _vegalite_version() -> str | None:
    """The Vega-Lite ``major.minor`` Altair targets, if vl-convert ships it."""
    import vl_convert as vlc

    try:
        import altair as alt

        wanted = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    except Exception:  # altair missing or unusual version string
        return None
    return wanted if wanted in vlc.get_vegalite_versions() else None


@cache
def javascript_bundle() -> str:
    """Vega + Vega-Lite + vega-embed as one self-contained classic script."""
    import vl_convert as vlc

    vl_version = _vegalite_version()
    kwargs = {"vl_version": vl_version} if vl_version else {}
    # The default snippet assigns window.vegaEmbed, window.vega, window.vegaLite.
    body = vlc.javascript_bundle(**kwargs)
    header = (
        "/* diffred: Vega {vega}, Vega-Lite {vl}, vega-embed {embed}; bundled by "
        "vl-convert-python {vlc} (BSD-3-Clause licensed libraries).\n"
        "   Wrapped in an IIFE so its top-level names stay private. */\n"
    ).format(
        vega=vlc.get_vega_version(),
        vl=vl_version or "latest",
        embed=vlc.get_vega_embed_version(),
        vlc=getattr(vlc, "__version__", "?"),
    )
    return (
        header
        + "(function () {\n'use strict';\n"
        + "if (window.vegaEmbed) { return; }\n"
        + body
        + "\n;window.dispatchEvent(new Event(" + json.dumps(READY_EVENT) + "));\n"
        + "}).call(undefined);\n"
    )


def write_bundle(static_dir: str | Path) -> Path:
    """Write the bundle into ``static_dir`` (unless an identical one is there)."""
    path = Path(static_dir) / BUNDLE_NAME
    text = javascript_bundle()
    if not (path.exists() and path.read_text(encoding="utf-8") == text):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------
# Sphinx extension
# --------------------------------------------------------------------------
CSS_NAME = "diffred.css"
#: page styles: tables scroll inside the column instead of being cut (headers and text cells
#: wrap), long code lines wrap, the provenance panel
CSS = """\
.cell_output table { display: block; max-width: 100%; overflow-x: auto; font-size: 0.8em; }
.cell_output table td, .cell_output table th { padding: 0.15em 0.45em; }
.cell_output table th { white-space: normal; vertical-align: bottom; }
.cell_output table td { white-space: normal; }
div.highlight pre, .cell_output pre { white-space: pre-wrap; overflow-wrap: anywhere; }
div.cell_input pre { font-size: 0.76rem; }   /* a 92-character line fits the column */
.diffred-vega { max-width: 100%; overflow-x: auto; }
.diffred-provenance p { font-size: 0.85em; margin-bottom: 0.3em; }
.diffred-provenance details summary { cursor: pointer; font-size: 0.85em; }
.diffred-provenance-table { font-size: 0.8em; }
.diffred-provenance-table th { text-align: left; padding-right: 1em; vertical-align: top; }
p.diffred-caption, .diffred-caption { font-size: 0.9em; color: #555; }
"""


def _on_builder_inited(app) -> None:
    # Written before the pages are, so Sphinx adds a ?v=<checksum> to the URL.
    if getattr(app.builder, "format", None) == "html":
        write_bundle(Path(app.outdir) / "_static")
        css = Path(app.outdir) / "_static" / CSS_NAME
        if not (css.exists() and css.read_text(encoding="utf-8") == CSS):
            css.write_text(CSS, encoding="utf-8")


def setup(app) -> dict[str, Any]:
    # defer: the 0.9 MB bundle does not block the page; chart scripts wait for it.
    app.add_js_file(BUNDLE_NAME, loading_method="defer")
    app.add_css_file(CSS_NAME)
    app.connect("builder-inited", _on_builder_inited)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


# --------------------------------------------------------------------------
# Altair renderer
# --------------------------------------------------------------------------
_SCRIPT = """<div id="{div_id}" class="diffred-vega"></div>
<script type="text/javascript">
(function () {{
  var id = {sel};
  var spec = {spec};
  var opt = {opt};
  var done = false, tries = 0;
  function draw() {{
    if (done || !window.vegaEmbed) {{ return; }}
    done = true;
    window.vegaEmbed(id, spec, opt).catch(function (err) {{
      var el = document.querySelector(id);
      if (el) {{ el.textContent = "Chart failed to render: " + err; }}
      console.error(err);
    }});
  }}
  function poll() {{
    if (done) {{ return; }}
    if (window.vegaEmbed) {{ draw(); return; }}
    if (tries++ < 1200) {{ setTimeout(poll, 50); return; }}
    var el = document.querySelector(id);
    if (el) {{
      el.textContent = "This chart needs the diffred Vega bundle ({bundle}), " +
        "which the diffred book loads on every page.";
    }}
  }}
  window.addEventListener({event}, draw);
  poll();
}})();
</script>"""


def _js(value: Any) -> str:
    """JSON that is safe inside an inline <script> element."""
    text = json.dumps(value, sort_keys=True)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def chart_html(spec: dict, embed_options: dict | None = None, div_id: str | None = None) -> str:
    """The ``text/html`` for a Vega-Lite spec: a div and a vegaEmbed call."""
    spec_js = _js(spec)
    if div_id is None:
        digest = hashlib.sha1(spec_js.encode()).hexdigest()[:10]
        div_id = f"diffred-vega-{digest}-{next(_counter)}"
    opt = {**DEFAULT_EMBED_OPTIONS, **(embed_options or {})}
    return _SCRIPT.format(
        div_id=div_id,
        sel=_js("#" + div_id),
        spec=spec_js,
        opt=_js(opt),
        event=_js(READY_EVENT),
        bundle=BUNDLE_NAME,
    )


def _vegalite_mimetype(spec: dict) -> str:
    schema = str(spec.get("$schema", ""))
    major = "5"
    if "/vega-lite/v" in schema:
        major = schema.split("/vega-lite/v", 1)[1].split(".", 1)[0] or major
    return f"application/vnd.vegalite.v{major}+json"


def renderer(spec: dict, embed_options: dict | None = None, **_: Any) -> dict:
    """Altair renderer: ``text/html`` for the book, Vega-Lite JSON for Jupyter UIs."""
    return {
        "text/html": chart_html(spec, embed_options),
        _vegalite_mimetype(spec): spec,
        "text/plain": "<Vega-Lite chart (diffred offline renderer)>",
    }


def enable_offline_altair(**options: Any) -> None:
    """Register and enable the ``"diffred"`` Altair renderer (idempotent).

    ``options`` are passed to ``alt.renderers.enable`` (for instance
    ``embed_options={"actions": True}``).
    """
    import altair as alt

    if RENDERER_NAME not in alt.renderers.names():
        alt.renderers.register(RENDERER_NAME, renderer)
    alt.renderers.enable(RENDERER_NAME, **options)


# --------------------------------------------------------------------------
# Tables for a reader
# --------------------------------------------------------------------------
def reader_table(df, columns=None, rename: dict | None = None, digits: int = 3):
    """A table cut down for the page; the full table stays in ``data/results``.

    Parameters
    ----------
    df : pandas.DataFrame
        A result table, one row per measurement.
    columns : list of str, optional
        Columns to keep, in this order (those absent from ``df`` are skipped); None: all.
    rename : dict of str to str, optional
        New column names, ``{old: new}``, applied after ``columns``.
    digits : int, default 3
        Float columns are shown rounded to this many decimals (NaN as "–").

    Returns
    -------
    pandas.io.formats.style.Styler
        The chosen, renamed columns of ``df``, no index, no line break at a "±" in text cells.
    """
    if columns is not None:
        df = df[[c for c in columns if c in df.columns]]
    df = df.rename(columns=rename or {})
    # "52.0 ± 0.4" never breaks at the ±; cells may still wrap at their other spaces
    df = df.apply(lambda col: col.map(lambda v: v.replace(" ± ", "\u00a0±\u00a0")
                                      if isinstance(v, str) else v)
                  if col.dtype.kind in "OSUT" or str(col.dtype) == "str" else col)
    floats = [c for c in df.columns if df[c].dtype.kind == "f"]
    return df.style.format({c: f"{{:.{digits}f}}" for c in floats}, na_rep="–").hide(
        axis="index")


def interval(lo, hi, spec: str = ".3f", scale: float = 1.0, missing: str = "no interval",
             sep: str = ", ") -> str:
    """A 95% interval as reader text, ``"[lo, hi]"`` with both ends formatted by ``spec``
    after multiplying by ``scale`` (100: a share as percent or points), or ``missing`` where
    either end is absent or not finite (one run, one pair, one task: no interval).

    Parameters
    ----------
    lo, hi : float or None
        The interval's ends.
    spec : str
        Format spec of each end (e.g. ``"+.1f"``).
    scale : float
        Factor applied before formatting.
    missing : str
        The text where there is no interval.
    sep : str
        Between the ends (``"\u00a0"``-joined keeps a table cell on one line).

    Returns
    -------
    str
    """
    import math
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return missing
    return f"[{scale * lo:{spec}}{sep}{scale * hi:{spec}}]"

