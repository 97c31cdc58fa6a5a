"""The published book: provenance on every chapter page, a bibliography that resolves every
citation, exercises with hidden solutions, downloadable executed notebooks, clean outputs.

The fast tests read the sources; the ``slow`` ones build the whole book at quick scale
(``diffred book -p quick True`` into a temporary folder) and read the site.
"""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from diffred.book import provenance
from diffred.book.chapter import Chapter, chapters

ROOT = Path(__file__).resolve().parents[2]
BIB = ROOT / "chapters" / "references.bib"
CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
EQ_REF = re.compile(r"\{eq\}`([^`]+)`")
EQ_LABEL = re.compile(r"^\$\$ \(([^)]+)\)\s*$", re.M)
HASH = re.compile(r"commit <code>([0-9a-f]{7,40}(-dirty)?|unknown)</code>")
TQDM_BAR = re.compile(r"\d+%\|[^|]*\||\d+(\.\d+)?(it|s)/(s|it)\]|Loading weights")


def bib_keys() -> set[str]:
    return set(re.findall(r"^@\w+\{([^,\s]+),", BIB.read_text(), re.M))


def pages() -> dict[str, str]:
    out = {p.stem: p.read_text() for p in chapters().values()}
    out["intro"] = (ROOT / "intro.md").read_text()
    return out


# --------------------------------------------------------------------------- sources
def test_every_citation_key_is_in_the_bibliography():
    keys = bib_keys()
    assert {"nanda2023diffused", "dalvi2020analyzing", "luo2023less",
            "neyshabur2020transferred", "kornblith2019similarity", "song2012feature",
            "chatterji2020criticality"} <= keys
    cited = {name: {k.strip() for group in CITE.findall(text) for k in group.split(",")}
             for name, text in pages().items()}
    missing = {name: sorted(c - keys) for name, c in cited.items() if c - keys}
    assert not missing, f"citation keys not in {BIB.name}: {missing}"
    for stem in chapters():
        assert cited[stem], f"chapter {stem} cites nothing"


def test_equation_references_have_labels():
    """Every {eq} names a label some page defines (equation labels are global in the book:
    CKA is defined once, in chapter 1, and referred to from chapters 2 and 4); every chapter
    labels or refers to an equation."""
    texts = pages()
    every = [label for t in texts.values() for label in EQ_LABEL.findall(t)]
    twice = sorted({x for x in every if every.count(x) > 1})
    assert not twice, f"equations labelled twice: {twice}"
    labels = set(every)
    for name, text in texts.items():
        refs = set(EQ_REF.findall(text))
        assert refs <= labels, f"{name}: {{eq}} to undefined labels {sorted(refs - labels)}"
        if name != "intro":
            assert EQ_LABEL.findall(text) and refs, f"{name}: no labelled / referenced equation"


def test_each_chapter_ends_with_three_exercises_with_hidden_solutions():
    for stem, text in pages().items():
        if stem == "intro":
            continue
        assert "## Exercises" in text, stem
        tail = text.split("## Exercises", 1)[1]
        assert len(re.findall(r"^\*\*Exercise \d+\.\d+", tail, re.M)) == 3, stem
        assert tail.count(":class: dropdown") == 3, stem
        assert tail.count("diffred run ") >= 2, stem


def test_deploy_workflow_builds_and_publishes_to_pages():
    """.github/workflows/book.yml parses and has the shape GitHub Actions needs (actionlint is not
    installable offline: its wheel downloads a binary): a quick build on pull requests, the full
    book on main, the site uploaded as a Pages artifact and deployed with the Pages permissions."""
    import yaml
    flow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    on = flow.get("on", flow.get(True))                 # YAML 1.1 reads a bare `on` as True
    assert {"push", "pull_request"} <= set(on) and on["push"]["branches"] == ["main"]
    assert flow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    jobs = flow["jobs"]
    assert set(jobs) == {"build", "deploy"} and jobs["deploy"]["needs"] == "build"
    for job in jobs.values():
        assert job["runs-on"] and job["steps"]
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step       # exactly one of the two
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]
    build = {step["uses"].split("@")[0]: step for step in jobs["build"]["steps"] if "uses" in step}
    assert build["actions/upload-pages-artifact"]["with"]["path"] == "_build/html"
    runs = " ".join(step.get("run", "") for step in jobs["build"]["steps"])
    assert "make book" in runs and "-p quick True" in runs
    deploy = jobs["deploy"]
    assert deploy["environment"]["name"] == "github-pages"
    assert [s["uses"].split("@")[0] for s in deploy["steps"]] == ["actions/deploy-pages"]


def test_provenance_record_and_panel(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFRED_RESULTS", str(tmp_path))
    import pandas as pd
    ch = Chapter("03_fewshot_soft_mask", {"quick": True, "n_episodes": 7})
    ch.section("load")
    ch.save(pd.DataFrame({"model": ["m"], "weights": ["abc123"], "x": [1.0]}), "t")
    data = ch.provenance_data()
    assert re.fullmatch(r"[0-9a-f]{7,40}(-dirty)?|unknown", data["commit"])
    assert data["changed_parameters"]["quick"] is True
    assert data["changed_parameters"]["n_episodes"] == 7
    assert data["weights"] == {"m": "abc123"}
    assert [s["section"] for s in data["sections"]] == ["load"]
    assert data["hardware"]["cores"] >= 1 and data["versions"]["torch"]
    html = provenance.panel_html(data, final=True)
    assert HASH.search(html) and ("CPU:" in html or "(GPU)" in html)
    ch.finish()
    written = json.loads((tmp_path / "03_fewshot_soft_mask" / "provenance.json").read_text())
    assert written["commit"] == data["commit"] and written["weights"] == {"m": "abc123"}
    assert (tmp_path / "03_fewshot_soft_mask" / "t.csv").exists()


def test_git_commit_outside_a_checkout(tmp_path):
    assert provenance.git_commit(tmp_path) == "unknown"


# --------------------------------------------------------------------------- the built site
class _Outputs(HTMLParser):
    """Text inside the cell-output containers of a myst-nb page."""

    def __init__(self):
        super().__init__()
        self.depth = 0
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("br", "img", "hr", "meta", "link", "input"):
            return
        cls = dict(attrs).get("class") or ""
        if self.depth:
            self.depth += 1
        elif "cell_output" in cls.split():
            self.depth = 1

    def handle_endtag(self, tag):
        if self.depth and tag not in ("br", "img", "hr", "meta", "link", "input"):
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.text.append(data)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    import os
    if os.environ.get("DIFFRED_TEST_SITE"):     # a site built already (diffred book -p quick True)
        return Path(os.environ["DIFFRED_TEST_SITE"])
    from diffred.book.cli import build_book
    out = tmp_path_factory.mktemp("book")
    index = build_book({"quick": True}, out)    # -W: a warning fails the build
    return index.parent


@pytest.mark.slow
def test_chapter_pages_have_provenance_and_notebooks(site: Path):
    for stem in chapters():
        html = (site / "chapters" / f"{stem}.html").read_text()
        assert "diffred-provenance" in html, f"{stem}: no provenance panel"
        assert HASH.search(html), f"{stem}: no commit hash in the provenance panel"
        assert re.search(r"CPU: [^<]+ cores|\(GPU\)", html), f"{stem}: no hardware line"
        assert "so far" not in html, f"{stem}: provenance panel not updated at the end"
        link = f"../notebooks/{stem}.ipynb"
        assert f'href="{link}"' in html, f"{stem}: no link to the executed notebook"
        nb = nbformat.read(site / "notebooks" / f"{stem}.ipynb", as_version=4)
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), stem
        assert (site / "notebooks" / f"{stem}.md").exists()
        assert "What this chapter found" in html


@pytest.mark.slow
def test_citations_resolve_and_outputs_are_clean(site: Path):
    bib = (site / "chapters" / "bibliography.html").read_text()
    for stem in chapters():
        html = (site / "chapters" / f"{stem}.html").read_text()
        assert 'class="problematic"' not in html, f"{stem}: unresolved reference"
        assert "bibliography.html#" in html, f"{stem}: no citation links to the bibliography"
        parser = _Outputs()
        parser.feed(html)
        text = "".join(parser.text)
        assert "Warning:" not in text and "Warning" not in text, f"{stem}: a warning in the outputs"
        assert not TQDM_BAR.search(text), f"{stem}: progress bar in the outputs"
        assert "output stderr" not in html, f"{stem}: stderr output rendered"
    surnames = re.findall(r"author\s*=\s*\{([^,]+),", BIB.read_text())
    assert len(surnames) == len(bib_keys())
    for surname in surnames:
        assert surname in bib, f"{surname} missing from the bibliography page"


#: Run in each chapter page at 1280 px: every chart, output table and code block that is wider
#: than the room it has (the article column, or the 136% of a ``full-width`` cell), or that
#: scrolls sideways inside it, as "<kind> <width>px > <room>px: <caption>".
LAYOUT_JS = """
setTimeout(() => {
  const art = document.querySelector("article.bd-article");
  const column = art.getBoundingClientRect();
  const bad = [];
  document.querySelectorAll(".vega-embed, .cell_output table, div.highlight pre, "
                            + ".cell_output pre").forEach((e) => {
    const cell = e.closest("div.cell");
    const room = cell && cell.classList.contains("tag_full-width")
      ? cell.getBoundingClientRect().right : column.right;
    const box = e.getBoundingClientRect();
    const next = cell && cell.nextElementSibling;
    const caption = next ? (next.innerText || "").slice(0, 60).replace(/\\n/g, " ") : "";
    if (box.left + e.scrollWidth > room + 2 || e.scrollWidth > e.clientWidth + 2)
      bad.push(e.tagName + " " + e.scrollWidth + "px > " + Math.round(room - box.left)
               + "px: " + caption);
  });
  const out = document.createElement("pre");
  out.id = "diffred-layout"; out.textContent = JSON.stringify(bad);
  document.body.appendChild(out);
}, 3000);
"""


@pytest.mark.slow
def test_charts_tables_and_code_fit_the_page_at_1280px(site: Path, tmp_path: Path):
    import shutil
    import subprocess
    chromium = next((c for c in ("/usr/bin/chromium", shutil.which("chromium")) if c and
                     Path(c).exists()), None)
    if chromium is None:
        pytest.skip("headless Chromium is not installed (apt-get install -y chromium)")
    (site / "_layout.js").write_text(LAYOUT_JS)
    for stem in [*chapters(), "rules_ledger", "your_own_model_and_data", "running_at_scale"]:
        page = site / "chapters" / f"_layout_{stem}.html"
        html = (site / "chapters" / f"{stem}.html").read_text()
        page.write_text(html.replace("</body>", '<script src="../_layout.js"></script></body>'))
        result = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
             "--virtual-time-budget=20000", "--window-size=1280,2000", "--dump-dom",
             page.as_uri()], capture_output=True, text=True, timeout=180)
        page.unlink()
        found = re.search(r'<pre id="diffred-layout">(.*?)</pre>', result.stdout, re.S)
        assert found, f"{stem}: the layout probe did not run (rc={result.returncode})"
        import html as html_lib
        too_wide = json.loads(html_lib.unescape(found.group(1)))
        assert not too_wide, f"{stem}: wider than the page at 1280 px: {too_wide}"


def test_reader_table_keeps_an_interval_on_one_line():
    import pandas as pd

    from diffred.core.display import reader_table
    df = pd.DataFrame({"cell": ["52.0 ± 0.4 (13)", "a long sentence that may wrap in the column"],
                       "x": [0.12345, 1.0]})
    html = reader_table(df).to_html()
    assert "52.0\u00a0±\u00a00.4 (13)" in html          # no break at the ±
    assert "a long sentence that may" in html                   # long text keeps its spaces
    assert "0.123" in html and "0.12345" not in html            # floats rounded


def test_the_book_can_be_cited_and_says_its_licence():
    """CITATION.cff validates against the Citation File Format 1.2.0 schema (vendored in
    tests/book/data from cffconvert 2.0.0) and lists the four papers the book reproduces;
    the LICENSE file is the licence pyproject.toml declares; a broken file is caught."""
    import jsonschema
    import yaml

    from diffred.core.paths import PROJECT_DIR
    schema = json.loads((Path(__file__).parent / "data" / "cff-1.2.0.schema.json").read_text())
    citation = yaml.safe_load((PROJECT_DIR / "CITATION.cff").read_text())
    validator = jsonschema.Draft7Validator(schema)
    assert not list(validator.iter_errors(citation))
    assert {r["identifiers"][0]["value"] if "identifiers" in r else r["doi"]
            for r in citation["references"]} == {
        "arXiv:2306.00183", "10.18653/v1/2020.emnlp-main.398", "arXiv:2310.03843v1",
        "arXiv:2008.11687"}
    broken = {k: v for k, v in citation.items() if k != "authors"}
    assert list(validator.iter_errors(broken))
    licence = (PROJECT_DIR / "LICENSE").read_text()
    assert licence.startswith("MIT License") and 'license = "MIT"' in \
        (PROJECT_DIR / "pyproject.toml").read_text() and citation["license"] == "MIT"
