"""`dockyard apply -f` against a live server: all documents or none, and a stack keeps its services."""
from __future__ import annotations

import pytest

from tests.integration.test_cli import SERVICE, Cli

pytestmark = pytest.mark.integration
OWNED = "service 'web' belongs to stack 'shop'; delete it there or apply with stack 'shop'"


@pytest.fixture
def cli(cluster, tmp_path) -> Cli:  # type: ignore[no-untyped-def]
    return Cli(cluster, tmp_path)


def test_a_stack_cannot_take_another_stacks_service(cluster, cli):
    cluster.start_agent("a")
    shop = SERVICE + "---\n" + SERVICE.replace("name: web", "name: api").replace("replicas: 2", "replicas: 1")
    out = cli("apply", "-f", cli.file("shop.yaml", shop), "--stack", "shop").stdout
    assert "service/web created" in out and "service/api created" in out

    # another stack names web too: refused with the owner, and its other service is not created either
    blog = SERVICE.replace("name: web", "name: posts") + "---\n" + SERVICE.replace("GREETING: hi", "GREETING: blog")
    blog_file = cli.file("blog.yaml", blog)
    for extra in ([], ["--dry-run"]):
        r = cli("apply", "-f", blog_file, "--stack", "blog", *extra, code=1)
        assert OWNED in r.output and "web: stack: " in r.output and "--take-over" in r.output
        assert "Plan:" not in r.stdout
    assert cluster.api.get("/v1/services/posts").status_code == 404
    web = cluster.service("web")
    assert web["stack"] == "shop" and web["spec"]["env"] == {"GREETING": "hi"} and web["revision"] == 1

    # a plain apply (no stack) of the same name is refused as well
    assert OWNED in cli("apply", "-f", cli.file("web.yaml", SERVICE), code=1).output
    assert cluster.service("web")["stack"] == "shop"

    # --take-over moves it on purpose
    out = cli("apply", "-f", blog_file, "--stack", "blog", "--take-over").stdout
    assert "service/posts created" in out
    assert "service/web configured (revision 2, rolling update started; moved to stack blog)" in out
    assert {s["name"]: s["services"] for s in cli.json("get", "stacks")} == {"blog": ["posts", "web"], "shop": ["api"]}


def test_a_multi_document_apply_is_all_or_nothing(cluster, cli):
    three = "---\n".join(SERVICE.replace("name: web", f"name: {n}") for n in ("one", "two", "three"))
    bad = three.replace("name: two\n", "name: two\nprivileged: true\n")
    r = cli("apply", "-f", cli.file("bad.yaml", bad), "--stack", "trio", code=1)
    assert "nothing was applied" in r.output and "service 'two' (services[1])" in r.output
    assert "two: privileged: privileged mode is not allowed on this server" in r.output
    assert cluster.api.get("/v1/services").json() == []
    out = cli("apply", "-f", cli.file("good.yaml", three), "--stack", "trio").stdout
    assert [line for line in out.splitlines() if line] == [
        "service/one created", "service/two created", "service/three created"]
    assert "service/two unchanged" in cli("apply", "-f", cli.file("good.yaml", three), "--stack", "trio").stdout
