"""The gateway on real agents and the real engine: routes to ready replicas on every node,
a killed replica leaves the routes, a rolling update under load loses no request, and a
WebSocket-style upgrade passes bytes both ways."""
from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from tests.harness import free_port, wait_for

pytestmark = pytest.mark.integration

# each replica serves its own hostname (the container id), so a test sees which one answered
WHOAMI = ["sh", "-c", "mkdir -p /w && hostname > /w/index.html && exec httpd -f -p 8080 -h /w"]
HEALTH = {"type": "http", "port": 8080, "path": "/", "interval": 0.3, "timeout": 1, "retries": 1}
# a minimal upgrade-speaking backend: reads the request head, answers 101, then echoes bytes
WS = ["sh", "-c", "printf '%s\\n' 'while read -r l; do l=$(printf %s \"$l\" | tr -d \"\\r\"); [ -z \"$l\" ] && break; done' "
      "'printf \"HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n\\r\\n\"' "
      "'exec cat' > /ws.sh && exec nc -ll -p 8080 -e sh /ws.sh"]


def start_gateway_agent(cluster, short: str) -> int:  # type: ignore[no-untyped-def]
    port = free_port()
    cluster.start_agent(short, "--gateway-listen", f"127.0.0.1:{port}", "--drain-seconds", "1")
    return port


def get(port: int, host: str = "web.localhost", path: str = "/", client: httpx.Client | None = None) -> httpx.Response:
    c = client or httpx
    return c.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}, timeout=5)


def routed(cluster, port: int, n: int, host: str = "web.localhost") -> set[str]:  # type: ignore[no-untyped-def]
    """Wait until n distinct replicas answer through the gateway at `port`; their hostnames."""
    seen: set[str] = set()

    def enough() -> bool:
        r = get(port, host)
        if r.status_code == 200:
            seen.add(r.text.strip())
        return len(seen) >= n

    wait_for(enough, 60, 0.05, what=f"{n} replicas answering through the gateway")
    return seen


def test_three_replicas_through_the_gateway_and_a_killed_one_leaves(cluster):
    port = start_gateway_agent(cluster, "a")
    assert get(port).status_code == 404  # nothing exposed yet
    body = get(port).json()
    assert body["error"]["code"] == "no_route" and "web.localhost" in body["error"]["message"]
    r = cluster.put("web", replicas=3, command=WHOAMI, expose=[{"port": 8080}])
    assert r.status_code == 201, r.text
    cluster.wait_ready("web", 3)
    ids = {c.id[:12] for c in cluster.containers("web")}
    assert routed(cluster, port, 3) == ids
    r = get(port)
    assert r.headers.get("content-type", "").startswith("text/html")

    # the endpoints API lists the same three, with their host ports
    eps = cluster.api.get("/v1/services/web/endpoints").json()
    assert len(eps["endpoints"]) == 3 and eps["routes"][0]["host"] == "web.localhost"
    assert all(e["ports"][0]["container_port"] == 8080 for e in eps["endpoints"])

    # kill one replica: the next requests go to the others (a connect failure is retried)
    victim = cluster.containers("web")[0]
    victim.kill()
    failures = 0
    with httpx.Client() as c:
        for _ in range(60):
            if get(port, client=c).status_code != 200:
                failures += 1
            time.sleep(0.02)
    assert failures <= 1, failures

    # scale to 0: no ready instance is a 503 naming the service
    cluster.api.post("/v1/services/web/scale", json={"replicas": 0})
    wait_for(lambda: get(port).status_code == 503, 30, what="503 with no replica")
    assert get(port).json()["error"]["code"] == "no_ready_instance"


def test_either_nodes_gateway_reaches_replicas_on_both(cluster):
    pa = start_gateway_agent(cluster, "a")
    pb = start_gateway_agent(cluster, "b")
    r = cluster.put("web", replicas=4, command=WHOAMI, expose=[{"port": 8080, "host": "shop.localhost"}])
    assert r.status_code == 201, r.text
    cluster.wait_ready("web", 4)
    by_node: dict[str, set[str]] = {}
    for c in cluster.containers("web"):
        by_node.setdefault(c.labels["dockyard.node"], set()).add(c.id[:12])
    assert len(by_node) == 2  # spread over both nodes
    for port in (pa, pb):
        seen = routed(cluster, port, 4, host="shop.localhost")
        assert all(seen & ids for ids in by_node.values())  # replicas of both nodes answered
    assert get(pa, host="web.localhost").status_code == 404  # only the declared host routes


def test_rolling_update_under_load_loses_no_request(cluster):
    port = start_gateway_agent(cluster, "a")
    spec = dict(replicas=4, command=WHOAMI, expose=[{"port": 8080}], health=HEALTH,
                update={"max_surge": 1, "max_unavailable": 0})
    assert cluster.put("web", **spec).status_code == 201
    cluster.wait_ready("web", 4)
    before = routed(cluster, port, 4)

    stop = threading.Event()
    results: list[int | str] = []

    def load() -> None:
        with httpx.Client() as c:
            while not stop.is_set():
                try:
                    results.append(get(port, client=c).status_code)
                except httpx.HTTPError as exc:
                    results.append(repr(exc))
                time.sleep(0.005)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        r = cluster.put("web", **spec, env={"VERSION": "2"})
        assert r.status_code == 200, r.text
        wait_for(lambda: cluster.api.get("/v1/services/web/rollout").json()["phase"] == "complete", 120,
                 0.2, what="rollout complete")
        # every old replica has been stopped and removed, under load
        wait_for(lambda: not ({c.id[:12] for c in cluster.containers("web", running_only=False)} & before), 60,
                 what="old replicas gone")
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    bad = [x for x in results if x != 200]
    assert len(results) > 200, len(results)
    assert bad == [], f"{len(bad)} of {len(results)} requests failed: {bad[:5]}"
    assert routed(cluster, port, 4).isdisjoint(before)  # the new replicas answer


def test_upgrade_passes_bytes_both_ways(cluster):
    port = start_gateway_agent(cluster, "a")
    assert cluster.put("ws", replicas=1, command=WS, expose=[{"port": 8080}]).status_code == 201
    cluster.wait_ready("ws", 1)

    def handshake() -> bytes | None:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /chat HTTP/1.1\r\nHost: ws.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    return None
                head += chunk
            if not head.startswith(b"HTTP/1.1 101"):
                return None
            s.sendall(b"\x81\x05hello")  # an (unmasked) text frame: the backend echoes bytes as they are
            got = head.split(b"\r\n\r\n", 1)[1]
            while len(got) < 7:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
            return got

    assert wait_for(handshake, 30, 0.3, what="upgrade through the gateway") == b"\x81\x05hello"


def test_a_container_reaches_another_service_through_its_nodes_gateway(cluster):
    port = free_port()
    cluster.start_agent("a", "--gateway-listen", f"0.0.0.0:{port}")  # containers reach it on the bridge
    assert cluster.put("web", replicas=1, command=WHOAMI, expose=[{"port": 8080}]).status_code == 201
    cluster.wait_ready("web", 1)
    web = cluster.containers("web")[0].id[:12]
    loop = 'while true; do wget -qO- --header "Host: web.localhost" "$DOCKYARD_GATEWAY/"; sleep 0.3; done'
    assert cluster.put("client", replicas=1, command=["sh", "-c", loop]).status_code == 201
    cluster.wait_running("client", 1)
    client = cluster.containers("client")[0]
    assert f"DOCKYARD_GATEWAY=http://dockyard-gateway:{port}" in client.attrs["Config"]["Env"]
    wait_for(lambda: web in client.logs().decode(), 30, 0.3, what="the client container reached web")


# backends that misbehave: one accepts and never answers, one closes at once without a word
HANGS = ["sh", "-c", "echo 'sleep 30' > /h.sh && exec nc -ll -p 8080 -e sh /h.sh"]
RESETS = ["sh", "-c", "echo 'exit 0' > /r.sh && exec nc -ll -p 8080 -e sh /r.sh"]


def test_a_hanging_or_closing_backend_is_a_504_or_502_and_others_are_served(cluster):
    port = free_port()
    cluster.start_agent("a", "--gateway-listen", f"127.0.0.1:{port}", "--gateway-timeout", "1")
    for name, command in (("hangs", HANGS), ("resets", RESETS), ("web", WHOAMI)):
        assert cluster.put(name, replicas=1, command=command, init=True, expose=[{"port": 8080}]).status_code == 201
    for name in ("hangs", "resets", "web"):
        cluster.wait_ready(name, 1)
    routed(cluster, port, 1)
    outcome: dict[str, httpx.Response] = {}

    def slow() -> None:
        outcome["hangs"] = get(port, "hangs.localhost")

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.2)
    assert get(port).status_code == 200  # the hung request holds up nobody else
    t.join(10)
    assert outcome["hangs"].status_code == 504, outcome["hangs"].text
    assert outcome["hangs"].json()["error"]["code"]
    r = get(port, "resets.localhost")
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"]
    assert get(port).status_code == 200  # and the gateway is still there
