"""The dashboard in a real browser against a real server, agent and Docker engine.

One walk through what an operator does: log in, watch a service created through the API
reach its ready count on the page without a reload, scale it from the page, read a line the
container printed in the logs view, roll back from the revisions view, run a command in the
terminal, drain the node. A viewer is then offered none of those actions. Each step leaves a
screenshot in the test's temp dir.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.harness import ADMIN, wait_for

pytestmark = pytest.mark.integration
GREETING = "hello-from-the-container"


def _login(page, url: str, token: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{url}/ui")
    page.get_by_test_id("token").fill(token)
    page.get_by_test_id("login").click()
    expect(page.locator("#live")).to_have_text("live")


def test_operator_walk_through(dash_cluster, page, tmp_path):  # type: ignore[no-untyped-def]
    c = dash_cluster
    shot = lambda name: page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)  # noqa: E731
    _login(page, c.url, ADMIN)
    shot("01-overview")
    page.evaluate("window.__noReload = 1")  # gone if the page reloads

    page.goto(f"{c.url}/ui/#/services")
    assert c.put("web", replicas=2, command=["sh", "-c", f"echo {GREETING}; exec sleep 3600"]).status_code == 201
    row = page.locator('tr[data-service="web"]')
    expect(row.get_by_test_id("ready")).to_have_text("2/2", timeout=60_000)
    shot("02-services-ready")

    row.get_by_role("link", name="web").click()
    expect(page.get_by_test_id("service-name")).to_have_text("web")
    page.get_by_test_id("replicas").fill("3")
    page.get_by_test_id("scale").click()
    expect(page.locator("#head").get_by_test_id("ready")).to_have_text("3/3", timeout=60_000)
    assert c.service("web")["replicas"] == 3
    expect(page.locator("tr[data-instance]")).to_have_count(3, timeout=30_000)
    shot("03-scaled")

    page.get_by_test_id("tab-logs").click()
    expect(page.get_by_test_id("log")).to_contain_text(GREETING, timeout=30_000)
    first = c.instances("web")[0]["id"]
    page.get_by_test_id("log-target").select_option(first)
    expect(page.get_by_test_id("log")).to_have_text(re.compile(GREETING), timeout=30_000)
    shot("04-logs")

    # revision 2 through the API, then back to 1 from the revisions view
    spec = c.service("web")["spec"]
    r = c.api.put("/v1/services/web", json={**spec, "replicas": 3, "env": {"COLOUR": "blue"}})
    assert r.status_code == 200 and r.json()["revision"] == 2, r.text
    page.get_by_test_id("tab-revisions").click()
    expect(page.locator('tr[data-revision="2"]')).to_contain_text("current")
    page.get_by_test_id("diff").click()
    expect(page.locator("#diffout")).to_contain_text("COLOUR")
    page.once("dialog", lambda d: d.accept())
    page.get_by_test_id("rollback-1").click()
    wait_for(lambda: c.service("web")["revision"] == 1, 30, what="rolled back to revision 1")
    expect(page.locator('tr[data-revision="1"]')).to_contain_text("current", timeout=30_000)
    shot("05-rolled-back")

    page.get_by_test_id("tab-instances").click()
    page.get_by_test_id("terminal").first.click()
    page.get_by_test_id("term-start").click()
    expect(page.get_by_test_id("term-state")).to_contain_text("running on", timeout=30_000)
    page.locator(".xterm").click()
    page.keyboard.type("echo answer=$((6*7))\n")
    expect(page.locator(".xterm-rows")).to_contain_text("answer=42", timeout=30_000)
    page.keyboard.type("exit 3\n")
    expect(page.get_by_test_id("term-state")).to_have_text("exited with code 3", timeout=30_000)
    assert any(e["kind"] == "instance_exec" for e in c.events(service="web"))
    shot("06-terminal")

    node = c.node("a")
    page.goto(f"{c.url}/ui/#/nodes")
    nrow = page.locator(f'tr[data-node="{node}"]')
    expect(nrow.get_by_test_id("availability")).to_have_text("active")
    page.once("dialog", lambda d: d.accept())
    nrow.locator('button[data-act="drain"]').click()
    expect(nrow.get_by_test_id("availability")).to_have_text("drained", timeout=30_000)
    assert c.api.get(f"/v1/nodes/{node}").json()["availability"] == "drained"
    shot("07-drained")

    page.goto(f"{c.url}/ui/#/events")
    expect(page.locator("#evs")).to_contain_text("node_drained")
    shot("08-events")
    assert page.evaluate("window.__noReload") == 1, "the page reloaded"
    assert not page.problems, page.problems  # type: ignore[attr-defined]


def test_viewer_is_offered_no_action(dash_cluster, page, tmp_path):  # type: ignore[no-untyped-def]
    c = dash_cluster
    assert c.put("seen", replicas=1).status_code == 201
    viewer = c.api.post("/v1/tokens", json={"name": "v", "role": "viewer"}).json()["token"]
    _login(page, c.url, viewer)
    page.goto(f"{c.url}/ui/#/services/default/seen")
    expect(page.locator("#head").get_by_test_id("ready")).to_have_text("1/1", timeout=60_000)
    expect(page.locator("tr[data-instance]")).to_have_count(1)
    expect(page.locator("#scalebar")).to_be_hidden()
    expect(page.get_by_test_id("terminal")).to_have_count(0)
    page.get_by_test_id("tab-revisions").click()
    expect(page.locator('tr[data-revision="1"]')).to_be_visible()
    expect(page.locator("[data-rollback]")).to_have_count(0)
    page.goto(f"{c.url}/ui/#/nodes")
    expect(page.locator(f'tr[data-node="{c.node("a")}"]')).to_be_visible()
    expect(page.locator("button[data-act]")).to_have_count(0)
    # a service in another namespace: its own row, detail, revisions and events (namespaced API paths)
    assert c.api.post("/v1/namespaces", json={"name": "dev"}).status_code == 201
    r = c.api.put("/v1/namespaces/dev/services/seen", json={"image": "dockyard-test:latest", "command": ["sleep", "3600"],
                                                            "replicas": 1, "init": True, "stop_timeout": 1})
    assert r.status_code == 201, r.text
    page.goto(f"{c.url}/ui/#/services")
    page.get_by_test_id("filter").fill("dev")
    expect(page.locator('tr[data-service="dev/seen"]').get_by_test_id("ready")).to_have_text("1/1", timeout=60_000)
    expect(page.locator('tr[data-service="seen"]')).to_have_count(0)
    page.locator('tr[data-service="dev/seen"]').get_by_role("link", name="seen").click()
    expect(page.locator("#head").get_by_test_id("ready")).to_have_text("1/1")
    expect(page.locator("tr[data-instance]")).to_have_count(1)
    page.get_by_test_id("tab-events").click()
    expect(page.locator("#pane")).to_contain_text("service_created")
    page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)
    # and the API refuses what is not offered: the page is not the guard
    assert c.api.post("/v1/services/seen/scale", json={"replicas": 2},
                      headers={"Authorization": f"Bearer {viewer}"}).status_code == 403
    assert not page.problems, page.problems  # type: ignore[attr-defined]
