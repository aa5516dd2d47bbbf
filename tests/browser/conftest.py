"""Browser tests: Debian's chromium (/usr/bin/chromium, installed by .ci/run) driven by Playwright.

No browser is downloaded (`playwright install` is never run). A missing chromium or Playwright
is a failure, not a skip: a skipped browser test in CI would claim coverage it does not give.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.harness import Cluster
from tests.integration.conftest import engine  # noqa: F401 - the Docker engine fixture

CHROMIUM = os.environ.get("DOCKYARD_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]


# Module scope, not session: while Playwright's sync API is open, an asyncio loop is marked as
# running in the main thread, and every later test that calls asyncio.run() (tests/unit) fails.
@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"Playwright is not installed ({exc}): pip install -e '.[test]'")
    if not Path(CHROMIUM).exists():  # pragma: no cover - environment problem
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def dash_cluster(engine, tmp_path, request):  # type: ignore[no-untyped-def]
    c = Cluster(tmp_path)
    c.start_server()
    c.start_agent("a")
    yield c
    c.close()
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        for log in sorted(tmp_path.glob("*.log")):
            print(f"===== {log.name}\n{log.read_text()[-6000:]}")


@pytest.fixture
def page(browser, tmp_path):  # type: ignore[no-untyped-def]
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    p = ctx.new_page()
    p.set_default_timeout(60_000)
    problems: list[str] = []
    p.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    p.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    p.problems = problems  # type: ignore[attr-defined]
    yield p
    try:
        p.screenshot(path=str(tmp_path / "last.png"), full_page=True)
    finally:
        ctx.close()
