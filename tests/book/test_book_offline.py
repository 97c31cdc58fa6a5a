"""The book renders its charts and its math with no network at all.

A throwaway one-page Jupyter Book is built with the project's own ``_config.yml``;
its page draws an Altair chart through :func:`diffred.core.display.enable_offline_altair`
and holds a ``$$ ... $$`` block. Headless Chromium, with every host name made
unresolvable, then loads the page from disk and the test checks that Vega drew
the chart and MathJax typeset the formula. It also checks that no built page
loads anything from ``http(s)://`` and that a cell that raises fails the build.

Needs the ``chromium`` Debian package (``apt-get install -y chromium``).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = next(
    (c for c in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
     if c and Path(c).exists()),
    None,
)
pytestmark = pytest.mark.slow      # builds books: not part of `make test-fast`

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (apt-get install -y chromium)"
)

NOTEBOOK_HEADER = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""

CHART_PAGE = NOTEBOOK_HEADER + """
# Offline check

```{code-cell} ipython3
:tags: [parameters]

n = 12
```

```{code-cell} ipython3
import altair as alt
import pandas as pd

from diffred.core.display import enable_offline_altair

enable_offline_altair()
df = pd.DataFrame({"x": list(range(n)), "y": [v * v for v in range(n)]})
alt.Chart(df).mark_line(point=True).encode(x="x:Q", y="y:Q")
```

$$
\\mathrm{CKA}(X, Y) = \\frac{\\lVert Y^\\top X \\rVert_F^2}
  {\\lVert X^\\top X \\rVert_F \\, \\lVert Y^\\top Y \\rVert_F}
$$
"""

FAILING_PAGE = NOTEBOOK_HEADER + """
# A cell that raises

```{code-cell} ipython3
raise RuntimeError("this cell must fail the build")
```
"""


def _jupyter_book() -> str:
    exe = Path(sys.executable).parent / "jupyter-book"
    if exe.exists():
        return str(exe)
    found = shutil.which("jupyter-book")
    if not found:
        pytest.fail("jupyter-book is not installed next to the running Python nor on PATH")
    return found


def _build(book: Path, page: str) -> subprocess.CompletedProcess:
    book.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "_config.yml", book / "_config.yml")  # the real settings
    (book / "_toc.yml").write_text("format: jb-book\nroot: page\n", encoding="utf-8")
    (book / "page.md").write_text(page, encoding="utf-8")
    return subprocess.run(
        [_jupyter_book(), "build", str(book)],
        cwd=book, capture_output=True, text=True, timeout=600,
    )


@pytest.fixture(scope="module")
def built_book(tmp_path_factory) -> Path:
    book = tmp_path_factory.mktemp("book")
    result = _build(book, CHART_PAGE)
    assert result.returncode == 0, (
        "jupyter-book build failed:\n" + result.stdout[-4000:] + result.stderr[-4000:]
    )
    html = book / "_build" / "html"
    assert (html / "page.html").exists()
    return html


def _dump_dom(page: Path, profile: Path) -> str:
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", f"--user-data-dir={profile}",
        # any attempt to reach a host fails: the page must work from disk alone
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--virtual-time-budget=10000", "--dump-dom", page.as_uri(),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "</html>" in result.stdout, (
        f"chromium failed (rc={result.returncode}):\n{result.stderr[-3000:]}"
    )
    return result.stdout


@needs_chromium
def test_chart_and_math_render_offline(built_book: Path, tmp_path: Path):
    dom = _dump_dom(built_book / "page.html", tmp_path / "chromium-profile")

    # (a) vega-embed drew the chart as SVG inside diffred's chart div
    divs = list(re.finditer(r'<div id="diffred-vega-[^"]*"[^>]*>', dom))
    assert divs, "no diffred chart container in the page"
    for div in divs:
        tag = div.group(0)
        assert "vega-embed" in tag, f"vegaEmbed never ran on {tag}"
        end = dom.find("</svg>", div.end())
        chart = dom[div.end():end]
        assert end > 0 and chart.lstrip().startswith("<svg"), "chart container holds no <svg>"
        assert re.search(r'class="mark-line role-mark', chart), "the line mark was not drawn"
        assert re.search(r'class="mark-symbol role-mark', chart), "the point marks were not drawn"
        assert "Chart failed" not in chart

    # (b) MathJax typeset the display formula, without errors
    assert "<mjx-container" in dom, "MathJax did not typeset the formula"
    assert "<mjx-merror" not in dom and "Math input error" not in dom


class _ExternalResources(HTMLParser):
    """Collects tags that would make the browser fetch an http(s) URL."""

    FETCHING_LINK_RELS = {"stylesheet", "preload", "modulepreload", "prefetch", "icon", "manifest"}

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = {k: (v or "") for k, v in attrs}
        url = ""
        if tag in {"script", "img", "iframe", "audio", "video", "source", "embed"}:
            url = attrs.get("src", "")
        elif tag == "link" and set(attrs.get("rel", "").lower().split()) & self.FETCHING_LINK_RELS:
            url = attrs.get("href", "")
        if re.match(r"\s*(https?:)?//", url):
            self.found.append(f"<{tag} {url}>")


def test_built_pages_load_nothing_from_the_network(built_book: Path):
    pages = sorted(built_book.rglob("*.html"))
    assert pages
    offenders = []
    for page in pages:
        parser = _ExternalResources()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        offenders += [f"{page.relative_to(built_book)}: {x}" for x in parser.found]
    for css in built_book.rglob("*.css"):
        text = css.read_text(encoding="utf-8", errors="replace")
        for m in re.finditer(r"""(@import\s+(url\()?|url\()\s*['"]?\s*((https?:)?//[^'")\s]+)""", text):
            offenders.append(f"{css.relative_to(built_book)}: {m.group(3)}")
    assert not offenders, "built book fetches from the network:\n" + "\n".join(offenders)
    # the libraries the page needs are in the book itself
    assert (built_book / "_static" / "diffred-vega-bundle.js").stat().st_size > 100_000
    assert (built_book / "_static" / "mathjax" / "tex-chtml.js").exists()


def test_renderer_output_is_self_contained():
    import altair as alt

    from diffred.core.display import enable_offline_altair

    enable_offline_altair()
    chart = alt.Chart(alt.Data(values=[{"x": 1, "y": 2}])).mark_point().encode(x="x:Q", y="y:Q")
    bundle = chart._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    html = bundle["text/html"]
    assert "window.vegaEmbed" in html and "src=" not in html
    assert any(k.startswith("application/vnd.vegalite.") for k in bundle)


def test_failing_cell_fails_the_build(tmp_path: Path):
    result = _build(tmp_path / "failing-book", FAILING_PAGE)
    assert result.returncode != 0, "a cell that raised did not fail the build"
    assert "this cell must fail the build" in result.stdout + result.stderr
