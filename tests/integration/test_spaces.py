"""Spaces on the real engine: a root space `dev` holds the application (front calls api through
the node's gateway, passing the dockyard-space header on), a child `alice` overrides only api,
a grandchild `bob` overrides nothing. A request addressed to a space is served by its own
version of each service, else by the nearest ancestor's."""
from __future__ import annotations

import time

import httpx
import pytest

from tests.harness import IMAGE, free_port, wait_for

pytestmark = pytest.mark.integration

# front: answers "front+" followed by what api answers, asked through the gateway with the
# same dockyard-space header front was called with (what an application does to join a space)
FRONT_SH = r"""
space=""
while read -r l; do
  l=$(printf %s "$l" | tr -d "\r"); [ -z "$l" ] && break
  case "$l" in [Dd]ockyard-[Ss]pace:*) space=$(printf %s "${l#*:}" | tr -d " ");; esac
done
if [ -n "$space" ]; then h="dockyard-space: $space"; else h="X-No-Space: 1"; fi
body="front+$(wget -qO- --header "Host: api.localhost" --header "$h" "$DOCKYARD_GATEWAY/")"
printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' "${#body}" "$body"
"""
FRONT = ["sh", "-c", f"cat > /front.sh <<'EOF'\n{FRONT_SH}\nEOF\nexec nc -ll -p 8080 -e sh /front.sh"]


def api(answer: str) -> list[str]:
    return ["sh", "-c", f"mkdir -p /w && echo {answer} > /w/index.html && exec httpd -f -p 8080 -h /w"]


def test_a_space_falls_back_to_its_ancestors_services(cluster):
    port = free_port()
    cluster.start_agent("a", "--gateway-listen", f"0.0.0.0:{port}", "--drain-seconds", "0")  # containers reach it
    for name, parent in (("dev", None), ("alice", "dev"), ("bob", "alice")):
        assert cluster.api.post("/v1/namespaces", json={"name": name, "parent": parent}).status_code == 201

    def put(space: str, name: str, command: list[str]) -> None:
        body = {"image": IMAGE, "init": True, "stop_timeout": 1, "command": command, "expose": [{"port": 8080}]}
        r = cluster.api.put(f"/v1/namespaces/{space}/services/{name}", json=body)
        assert r.status_code == 201, r.text

    put("dev", "front", FRONT)
    put("dev", "api", api("api-dev"))
    put("alice", "api", api("api-alice"))

    def get(host: str, **headers: str) -> str | None:
        r = httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": host, **headers}, timeout=10)
        return r.text.strip() if r.status_code == 200 else None

    # no space: the root's services; alice: her api behind dev's front; bob: two levels up
    wait_for(lambda: get("front.localhost") == "front+api-dev", 60, 0.2, what="dev's front and api")
    wait_for(lambda: get("alice.s.front.localhost") == "front+api-alice", 30, 0.2, what="alice's api behind dev's front")
    assert get("front.localhost", **{"dockyard-space": "alice"}) == "front+api-alice"
    assert get("front.localhost", baggage="userId=7,dockyard-space=alice") == "front+api-alice"
    assert get("bob.s.front.localhost") == "front+api-alice"
    assert get("api.localhost") == "api-dev"
    # the child space costs exactly its own service's containers
    mine = cluster.containers(node=cluster.node("a"))
    assert {c.labels["dockyard.namespace"] for c in mine} == {"dev", "alice"}
    assert [c.labels["dockyard.service"] for c in mine if c.labels["dockyard.namespace"] == "alice"] == ["api"]
    # an unknown space is a 404 naming it
    r = httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": "carol.s.front.localhost"}, timeout=10)
    assert r.status_code == 404 and "carol" in r.json()["error"]["message"]

    # alice drops her api: her requests fall back to dev's
    assert cluster.api.delete("/v1/namespaces/alice/services/api").status_code == 202
    t0 = time.monotonic()
    wait_for(lambda: get("alice.s.front.localhost") == "front+api-dev", 30, 0.02, what="alice falls back to dev's api")
    print(f"fallback after the delete: {time.monotonic() - t0:.2f}s")
    assert get("bob.s.front.localhost") == "front+api-dev"
