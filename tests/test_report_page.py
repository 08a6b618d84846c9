"""report.html, as a person opens it: collect writes one self-contained page per collection whose
numbers are the tables' own, with every section; in a real browser (Debian's headless Chromium) it
loads from disk with no console error, every image decodes, the table sorts on a click."""

import base64
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from helpers.rundirs import run_dirs
from sweep.report.cli import main as collect_main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# as root, in a closed network: no sandbox, no background connections (they are refused, many at a time)
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Page(HTMLParser):
    """What a test reads of the page: headings, images, links, and each table's rows as (data-value, text)."""

    def __init__(self, text: str):
        super().__init__()
        self.headings, self.images, self.links, self.tables = [], [], [], []
        self._in, self._cell = None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("h2", "h3"):
            self._in, self.headings = tag, self.headings + [""]
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "a":
            self.links.append(attrs["href"])
        elif tag == "table":
            self.tables.append({"header": [], "rows": []})
        elif tag == "th":
            self._in = "th"
            self.tables[-1]["header"].append("")
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag == "td":
            self._cell = [attrs.get("data-value"), ""]

    def handle_endtag(self, tag):
        if tag == "td":
            self.tables[-1]["rows"][-1].append(tuple(self._cell))
            self._cell = None
        elif tag in ("h2", "h3", "th"):
            self._in = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data
        elif self._in in ("h2", "h3"):
            self.headings[-1] += data
        elif self._in == "th":
            self.tables[-1]["header"][-1] += data

    def table(self, number: int = 0) -> pd.DataFrame:
        """A table's data-values (the numbers behind the text) by header; the header row is dropped."""
        found = self.tables[number]
        rows = [row for row in found["rows"] if row]
        return pd.DataFrame([[value for value, _ in row] for row in rows], columns=found["header"])


def collected_page(capsys, sweep: Path, out: Path) -> Page:
    assert collect_main([str(sweep), "--out", str(out)]) == 0
    said = capsys.readouterr().err.strip().splitlines()
    assert said[-1] == f"collect: the report page: {out / 'report.html'}"  # its path on the last line
    return Page((out / "report.html").read_text())


def test_the_smoke_grids_page_holds_every_section_with_the_tables_numbers(smoke_sweep, tmp_path, capsys):
    page = collected_page(capsys, smoke_sweep, tmp_path)
    text = (tmp_path / "report.html").read_text()
    for heading in ("Comparison table", "Which cells differ", "Learning curves", "Cost against quality"):
        assert heading in page.headings, page.headings
    assert "The runs behind each row" in page.headings
    # self-contained: every image inline and a PNG, nothing fetched from anywhere
    assert len(page.images) == 4 and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert all(base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n" for src in page.images)
    assert "http://" not in text and "https://" not in text and "<link" not in text
    # the table's numbers are summary.csv's
    shown, summary = page.table(0), pd.read_csv(tmp_path / "summary.csv")
    assert len(shown) == len(summary) == 4
    for _, row in shown.iterrows():
        cell = summary[(summary.model == row["model"]) & (summary.pooling == row["pooling"])].iloc[0]
        assert float(row["test acc"]) == pytest.approx(cell["test/acc"], abs=1e-12)
        assert float(row["train loop (s)"]) == pytest.approx(cell["train_seconds"], abs=1e-12)
    # each row's run dir, linked from the page
    for run in run_dirs(smoke_sweep):
        assert any((tmp_path / link).resolve() == run.resolve() for link in page.links), run
    # the cells on the Pareto front are named in words
    assert "Cells no other cell beats on both" in text


def test_a_seeded_sweeps_page_gives_each_cell_a_95_percent_interval_over_its_seeds(seeds_sweep, tmp_path, capsys):
    page = collected_page(capsys, seeds_sweep, tmp_path)
    shown, summary = page.table(0), pd.read_csv(tmp_path / "summary.csv")
    assert (summary["n"] == 2).all()
    for _, row in shown.iterrows():
        cell = summary[(summary.model == row["model"]) & (summary.pooling == row["pooling"])].iloc[0]
        half = stats.t.ppf(0.975, cell["n"] - 1) * cell["test/acc_std"] / cell["n"] ** 0.5
        expected = f"[{cell['test/acc'] - half:.4f}, {cell['test/acc'] + half:.4f}]"
        assert row["test/acc 95% interval (t, seeds)"] == expected
    sig = pd.read_csv(tmp_path / "significance.csv")
    words = (tmp_path / "report.html").read_text()
    assert f"of {len(sig)} pairs differ" in words or f"No pair of the {len(sig)} differs" in words


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here: .ci/run installs Debian's chromium")
def test_the_page_loads_in_a_real_browser_images_decode_and_the_table_sorts(smoke_sweep, tmp_path, capsys):
    from playwright.sync_api import sync_playwright

    collected_page(capsys, smoke_sweep, tmp_path)
    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto((tmp_path / "report.html").as_uri())
            widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete && i.naturalWidth)")
            assert len(widths) == 4 and all(width > 0 for width in widths), widths
            header = page.locator("table.sortable").first.locator("th", has_text="test acc").first
            column = page.eval_on_selector_all(
                "table.sortable:first-of-type thead th", "ths => ths.map(th => th.textContent)"
            ).index(header.text_content())

            def values():
                return [
                    float(v)
                    for v in page.eval_on_selector_all(
                        f"table.sortable:first-of-type tbody tr td:nth-child({column + 1})",
                        "cells => cells.map(c => c.dataset.value)",
                    )
                ]

            header.click()
            assert values() == sorted(values()) and header.get_attribute("aria-sort") == "ascending"
            header.click()
            assert values() == sorted(values(), reverse=True) and header.get_attribute("aria-sort") == "descending"
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert (tmp_path / "report.png").stat().st_size > 10_000
