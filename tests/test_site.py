"""The documentation site in a real browser: built with `mkdocs build --strict`, served on the
loopback address, opened in Debian's chromium driven by Playwright (no browser download).

Checks what a reader relies on: every published method is in the leaderboard tables, a click
on a column header sorts the rows, every forgetting heatmap loads, no page logs a console
error or fails a request (the site works offline), and a screenshot of the leaderboard page
is saved for a person to look at ($BENCH_SITE_SCREENSHOT, default: the test's tmp folder).
Skipped, with the reason, where MkDocs, Playwright or chromium is missing.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.results import leaderboard, site

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("BENCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

missing = [name for name in ("mkdocs", "material", "playwright") if importlib.util.find_spec(name) is None]
pytestmark = [
    pytest.mark.skipif(bool(missing), reason=f"needs the docs extra ({', '.join(missing)} missing): pip install -e '.[docs]'"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM} (apt-get install chromium)"),
]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The site built from this checkout, served from a thread on 127.0.0.1 (a free port)."""
    built = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(built)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(built)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A page that records console errors, uncaught exceptions and failed requests."""
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    tab = context.new_page()
    tab.problems = []
    tab.on("console", lambda message: message.type == "error" and tab.problems.append(f"console: {message.text}"))
    tab.on("pageerror", lambda error: tab.problems.append(f"page error: {error}"))
    # a request cancelled by the next navigation (net::ERR_ABORTED) is not a failure of the site
    tab.on("requestfailed", lambda request: "ERR_ABORTED" not in (request.failure or "")
           and tab.problems.append(f"request failed: {request.url} ({request.failure})"))
    tab.on("response", lambda response: response.status >= 400 and tab.problems.append(f"{response.status}: {response.url}"))
    yield tab
    context.close()


def published_tables():
    """(page name, method rows, number of published runs' figures) of every leaderboard table."""
    published = ROOT / "results" / leaderboard.PUBLISHED
    groups = leaderboard.gather(published)
    return [(name, list(leaderboard.group_frame(group).index),
             sum(len(figures) for figures in site.group_figures(group, published).values()))
            for group, name in zip(groups, site.slugs(groups))]


def rows(page, table: str = "table.sortable") -> list[str]:
    return page.locator(f"{table} tbody tr th").all_inner_texts()


def test_every_published_method_is_listed_and_every_heatmap_loads(served, page):
    tables = published_tables()
    assert tables, "no published runs"
    listed = set()
    for name, methods, expected in tables:
        page.goto(f"{served}/results/{name}/", wait_until="load")
        shown = rows(page)
        assert sorted(shown) == sorted(methods), name
        listed.update(shown)
        heatmaps = page.locator("img.heatmap")
        sizes = heatmaps.evaluate_all("images => images.map(image => [image.complete, image.naturalWidth])")
        assert len(sizes) == expected > 0, name
        assert all(complete and width > 0 for complete, width in sizes), (name, sizes)
        curves = page.locator("img.curves").evaluate_all("images => images.map(image => image.naturalWidth)")
        assert len(curves) == expected and min(curves) > 0, name
    every = {method.name for run in (ROOT / "results" / leaderboard.PUBLISHED).iterdir()
             if not run.name.startswith(".")  # not the publishers' .locks
             for method in (run / "methods").iterdir()}
    assert every <= listed  # each published method appears in a table
    assert page.problems == []


def test_a_click_on_a_column_header_sorts_the_rows(served, page):
    name = published_tables()[0][0]
    page.goto(f"{served}/results/{name}/", wait_until="load")
    table = page.locator("table.sortable").first
    headers = table.locator("thead th").all_inner_texts()
    column = headers.index("Avg")
    before = rows(page)

    def values() -> list[float]:
        texts = table.locator(f"tbody tr td:nth-child({column + 1})").all_inner_texts()
        return [float(text.split()[0]) for text in texts if text.strip() not in ("", "–")]

    table.locator("thead th").nth(column).click()
    descending = values()
    assert descending == sorted(descending, reverse=True) and rows(page) != before
    assert table.locator("thead th").nth(column).get_attribute("aria-sort") == "descending"
    table.locator("thead th").nth(column).click()
    assert values() == sorted(descending)
    table.locator("thead th").nth(0).click()  # the method names: text order
    names = rows(page)
    assert names in (sorted(names, key=str.lower), sorted(names, key=str.lower, reverse=True))
    assert page.problems == []


def test_every_page_loads_without_errors_and_the_leaderboard_is_photographed(served, page, tmp_path):
    for path in ["", "getting-started/", "methods/teracon/", "results/", "results/reference/", "parity/"]:
        page.goto(f"{served}/{path}", wait_until="load")
        assert page.locator("h1").count() >= 1, path
    page.goto(f"{served}/results/", wait_until="load")
    links = page.locator("article table a").all_inner_texts()
    assert len(links) == len(published_tables())
    name = next((n for n, _, _ in published_tables() if n == "synthetic-quick"), published_tables()[0][0])
    page.set_viewport_size({"width": 1400, "height": 2400})
    page.goto(f"{served}/results/{name}/", wait_until="load")
    folder = Path(os.environ.get("BENCH_SITE_SCREENSHOT") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / "leaderboard.png"
    page.screenshot(path=str(shot))  # the table and the first methods' heatmaps
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    assert page.problems == []
