"""Gateway data plane benchmark: the same backends (a) directly, (b) through Dockyard's gateway
(`python -m agent.gateway`, a separate process) and (c) through nginx with keep-alive upstreams.

    python bench/gateway.py [--seconds 10] [--connections 64] [--rate 1000] [--no-spaces] [--space-rounds 1]

Per target: saturation throughput and latency with wrk (-t2 -c<connections>), then latency at
a fixed rate (wrk2 if installed, else an open-loop asyncio client in this process: requests
are scheduled at fixed times and latency counts from the scheduled time, so a stall delays
the queue behind it rather than hiding it). Prints the latency (b) and (c) add over (a).
Backends: 3 busybox httpd containers if Docker and dockyard-test:latest are there, else 3
local asyncio servers. Everything started is stopped at the end, by pid or container id.

Spaces (on unless --no-spaces): the routing overhead of the space lookup. A second gateway
process, same backends, serves namespace `root` (host web.localhost) and the spaces a (parent
root), b (parent a), c (parent b), which have no route of their own. Measured the same two ways
side by side: (1) Host web.localhost, no space; (2) Host c.s.web.localhost, whose lookup walks
c -> b -> a -> root; (3) Host web.localhost with `dockyard-space: c`. Each is checked to get a
200 first. Prints the p99 (and req/s) of (2) and (3) against (1), the gateway's CPU time per
request at saturation (from /proc), and what `route_request` alone costs in this process.
--space-rounds N repeats the three N times in rotated order and reports the median of each figure.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, cpu_seconds, percentile, print_machine  # noqa: E402

import httptools  # noqa: E402

HOST = "web.localhost"
IMAGE = "dockyard-test:latest"

# the spaces measurement: namespace root exposes HOST; a, b, c are spaces with no route of their own
SPACES: dict[str, str | None] = {"root": None, "a": "root", "b": "a", "c": "b"}
SPACE_VARIANTS: list[tuple[str, list[str]]] = [
    (f"(1) Host {HOST} (no space)", [f"Host: {HOST}"]),
    (f"(2) Host c.s.{HOST} (c>b>a>root)", [f"Host: c.s.{HOST}"]),
    ("(3) dockyard-space: c (c>b>a>root)", [f"Host: {HOST}", "dockyard-space: c"]),
]

PY_BACKEND = r"""
import asyncio, sys
try:
    import uvloop; uvloop.install()
except ImportError:
    pass
BODY = b"dockyard test page\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%b" % (len(BODY), BODY)
async def serve(r, w):
    try:
        while True:
            await r.readuntil(b"\r\n\r\n")
            w.write(RESP)
    except Exception:
        pass
    w.close()
async def main():
    s = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    await s.serve_forever()
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class Started:
    """Everything the run started, to stop at the end whatever happens."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.containers: list[str] = []

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.containers:
            subprocess.run(["docker", "rm", "-f", *self.containers], capture_output=True, timeout=60)


def docker_backends(started: Started, n: int) -> list[int] | None:
    if shutil.which("docker") is None:
        return None
    try:
        if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, timeout=20).returncode:
            return None
        ports = []
        for _ in range(n):
            cid = subprocess.run(["docker", "run", "-d", "--rm", "-p", "127.0.0.1::8080", IMAGE,
                                  "httpd", "-f", "-p", "8080", "-h", "/www"],
                                 capture_output=True, text=True, timeout=60, check=True).stdout.strip()
            started.containers.append(cid)
            out = subprocess.run(["docker", "port", cid, "8080/tcp"], capture_output=True, text=True,
                                 timeout=20, check=True).stdout
            ports.append(int(out.split()[0].rsplit(":", 1)[1]))
        for p in ports:
            wait_port(p)
        return ports
    except (subprocess.SubprocessError, OSError, ValueError, IndexError, RuntimeError) as e:
        print(f"# docker backends unavailable ({e}); using local Python servers")
        return None


def python_backends(started: Started, n: int) -> list[int]:
    ports = [free_port() for _ in range(n)]
    for p in ports:
        started.procs.append(subprocess.Popen([sys.executable, "-c", PY_BACKEND, str(p)]))
    for p in ports:
        wait_port(p)
    return ports


def gateway_routes(ports: list[int], namespace: str = "default") -> list[dict[str, Any]]:
    return [{"service": "web", "namespace": namespace, "host": HOST, "path_prefix": "/", "port": 8080,
             "endpoints": [{"instance_id": f"i{k}", "node": "n1", "address": "127.0.0.1", "port": p}
                           for k, p in enumerate(ports)]}]


def start_gateway(started: Started, tmp: Path, ports: list[int], spaces: dict[str, str | None] | None = None) -> int:
    """A gateway process serving `ports` on HOST: in namespace default (every namespace a root),
    or, with `spaces`, in namespace root with that spaces map."""
    if spaces is None:
        name, data = "routes.json", json.dumps(gateway_routes(ports))
    else:
        name, data = "routes-spaces.json", json.dumps({"routes": gateway_routes(ports, "root"), "spaces": spaces})
    (tmp / name).write_text(data)
    port = free_port()
    started.procs.append(subprocess.Popen(
        [sys.executable, "-m", "agent.gateway", "--listen", f"127.0.0.1:{port}", "--routes", str(tmp / name)],
        cwd=ROOT, stdout=subprocess.DEVNULL))
    wait_port(port)
    return port


def start_nginx(started: Started, tmp: Path, ports: list[int], workers: int) -> int | None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        return None
    port = free_port()
    prefix = tmp / "nginx"
    prefix.mkdir()
    servers = "\n".join(f"    server 127.0.0.1:{p};" for p in ports)
    (prefix / "nginx.conf").write_text(f"""
worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy; fastcgi_temp_path {prefix}/fcgi;
  uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
  upstream backends {{
{servers}
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
}}
""")
    started.procs.append(subprocess.Popen([nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                                           "-e", str(prefix / "error.log")], stderr=subprocess.DEVNULL))
    wait_port(port)
    return port


# ---- load ------------------------------------------------------------------------------------

def _ms(s: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def run_wrk(port: int, seconds: int, connections: int, rate: int | None = None,
            headers: list[str] | None = None) -> dict[str, float]:
    hs = [a for h in (headers or [f"Host: {HOST}"]) for a in ("-H", h)]
    cmd = ["wrk2" if rate else "wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
           *hs, f"http://127.0.0.1:{port}/"]
    if rate:
        cmd[1:1] = [f"-R{rate}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"\s50(?:\.000)?%\s+(\S+)", out)
    p99 = re.search(r"\s99(?:\.000)?%\s+(\S+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": float(rps.group(1)) if rps else float("nan"),
            "p50": _ms(p50.group(1)) if p50 else float("nan"), "p99": _ms(p99.group(1)) if p99 else float("nan"),
            "errors": (int(errors.group(1)) if errors else 0) + (sum(map(int, sock.groups())) if sock else 0)}


class _Resp:
    def __init__(self) -> None:
        self.done = False

    def on_message_complete(self) -> None:
        self.done = True


async def _fixed_rate(port: int, rate: int, seconds: int, headers: list[str] | None = None) -> dict[str, float]:
    request = "".join(["GET / HTTP/1.1\r\n", *(f"{h}\r\n" for h in headers or [f"Host: {HOST}"]), "\r\n"]).encode()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    latencies: list[float] = []
    errors = 0

    async def one(at: float) -> None:  # `at` on the perf_counter clock: uvloop's loop.time() has 1 ms steps
        nonlocal errors
        try:
            r, w = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
            w.write(request)
            cb = _Resp()
            p = httptools.HttpResponseParser(cb)
            while not cb.done:
                data = await r.read(65536)
                if not data:
                    raise ConnectionError("closed mid-response")
                p.feed_data(data)
            latencies.append((time.perf_counter() - at) * 1000)
            if p.should_keep_alive() and p.get_status_code() < 400:
                idle.append((r, w))
            else:
                w.close()
                if p.get_status_code() >= 400:
                    errors += 1
        except (OSError, httptools.HttpParserError):
            errors += 1

    tasks = []
    start = time.perf_counter() + 0.05
    for i in range(rate * seconds):
        at = start + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(at)))
    await asyncio.gather(*tasks)
    for _, w in idle:
        w.close()
    achieved = len(latencies) / seconds
    return {"rps": achieved, "p50": percentile(latencies, 50), "p99": percentile(latencies, 99), "errors": errors}


def fixed_rate(port: int, rate: int, seconds: int, headers: list[str] | None = None) -> dict[str, float]:
    if shutil.which("wrk2"):
        return run_wrk(port, seconds, 16, rate, headers)
    try:
        import uvloop
        return uvloop.run(_fixed_rate(port, rate, seconds, headers))
    except ImportError:
        return asyncio.run(_fixed_rate(port, rate, seconds, headers))


# ---- spaces ----------------------------------------------------------------------------------

def probe(port: int, headers: list[str]) -> str:
    """The status line of one GET / with `headers`, and the body's first bytes if it is no 200."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall("".join(["GET / HTTP/1.1\r\n", *(f"{h}\r\n" for h in headers),
                           "Connection: close\r\n\r\n"]).encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    return status if " 200 " in status + " " else f"{status} {body[:200]!r}"


def route_request_cost(ports: list[int], calls: int = 200_000) -> list[float]:
    """Microseconds per `routing.route_request` call for each of SPACE_VARIANTS, on the table
    the spaces gateway serves (best of 5 runs of `calls`), as session.py calls it."""
    from agent.gateway import routing as rt
    table = rt.Table.from_wire(gateway_routes(ports, "root"), SPACES)
    out = []
    for _, headers in SPACE_VARIANTS:
        host = next(h.split(": ", 1)[1] for h in headers if h.startswith("Host: "))
        space = next((h.split(": ", 1)[1].encode() for h in headers if h.startswith("dockyard-space: ")), None)
        route = rt.route_request(table, host, "/", space, None)[0]
        assert route is not None and route.namespace == "root", (headers, route)
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(calls):
                rt.route_request(table, host, "/", space, None)
            best = min(best, time.perf_counter() - t0)
        out.append(best / calls * 1e6)
    return out


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "errors"}
    out["errors"] = sum(r["errors"] for r in runs)
    return out


def measure_spaces(port: int, pid: int, ports: list[int], args: argparse.Namespace) -> None:
    """The three SPACE_VARIANTS against the spaces gateway (`port`, process `pid`)."""
    for name, headers in SPACE_VARIANTS:
        status = probe(port, headers)
        if " 200 " not in status + " ":
            raise RuntimeError(f"spaces gateway: {name} got {status}")
    n = len(SPACE_VARIANTS)
    runs: dict[int, list[tuple[dict[str, float], dict[str, float]]]] = {i: [] for i in range(n)}
    for k in range(args.space_rounds):
        for i in [(k + j) % n for j in range(n)]:  # rotated, so no variant always runs first
            headers = SPACE_VARIANTS[i][1]
            cpu0 = cpu_seconds(pid)
            sat = run_wrk(port, args.seconds, args.connections, headers=headers)
            sat["cpu_us"] = (cpu_seconds(pid) - cpu0) / max(sat["rps"] * args.seconds, 1) * 1e6
            runs[i].append((sat, fixed_rate(port, args.rate, args.seconds, headers)))
    res = [(_median_run([s for s, _ in runs[i]]), _median_run([f for _, f in runs[i]])) for i in range(n)]
    cost = route_request_cost(ports)

    print()
    print("# spaces: routing overhead of the space lookup; a second gateway, same backends, namespace root "
          f"exposes {HOST}, spaces a (parent root), b (parent a), c (parent b) have no route of their own")
    rounds = f"median of {args.space_rounds} rounds, order rotated" if args.space_rounds > 1 else "1 round"
    print(f"# each variant got a 200 before measuring; same wrk and fixed-rate runs as above, {rounds}")
    print("# gw cpu us/req: the spaces gateway's CPU time (user+sys, /proc) per request during the wrk run")
    print(f"{'variant':<40}{'sat req/s':>11}{'sat p50 ms':>12}{'sat p99 ms':>12}{'errors':>8}{'gw cpu us/req':>15}"
          f"{'@rate req/s':>13}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for (name, _), (sat, fix) in zip(SPACE_VARIANTS, res):
        print(f"{name:<40}{sat['rps']:>11.0f}{sat['p50']:>12.2f}{sat['p99']:>12.2f}{sat['errors']:>8.0f}"
              f"{sat['cpu_us']:>15.1f}{fix['rps']:>13.0f}{fix['p50']:>9.2f}{fix['p99']:>9.2f}{fix['errors']:>8.0f}")
    (bsat, bfix) = res[0]
    for (name, _), (sat, fix) in zip(SPACE_VARIANTS[1:], res[1:]):
        print(f"{name[:3]} vs (1): at {args.rate} req/s p50 {fix['p50'] - bfix['p50']:+.2f} ms, "
              f"p99 {fix['p99'] - bfix['p99']:+.2f} ms; at saturation p99 {sat['p99'] - bsat['p99']:+.2f} ms, "
              f"req/s {(sat['rps'] / bsat['rps'] - 1) * 100:+.1f}%, "
              f"gw cpu {sat['cpu_us'] - bsat['cpu_us']:+.1f} us/req")
    print("route_request alone (routing.py, this process, best of 5 x 200k calls): "
          + ", ".join(f"{name[:3]} {us:.2f} us" for (name, _), us in zip(SPACE_VARIANTS, cost))
          + f"; chain walk adds {cost[1] - cost[0]:+.2f} us (host), {cost[2] - cost[0]:+.2f} us (header)")


# ---- main ------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=10,
                    help="per measurement (2 per target, 3 targets; with spaces 2 per variant, 3 variants)")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections at saturation")
    ap.add_argument("--rate", type=int, default=1000, help="requests/s of the fixed-rate run")
    ap.add_argument("--backends", choices=["auto", "docker", "python"], default="auto")
    ap.add_argument("--nginx-workers", type=int, default=1,
                    help="nginx worker processes (1: one core, like the gateway's one event loop)")
    ap.add_argument("--spaces", action=argparse.BooleanOptionalAction, default=True,
                    help="also measure the space lookup: no space vs a 3-level chain by Host and by header")
    ap.add_argument("--space-rounds", type=int, default=1,
                    help="repeat the three space variants this many times (rotated order), report medians")
    args = ap.parse_args()
    if args.space_rounds < 1:
        ap.error("--space-rounds must be >= 1")
    if shutil.which("wrk") is None:
        print("wrk is not installed", file=sys.stderr)
        return 1

    print_machine("gateway data plane: direct vs Dockyard gateway vs nginx")
    started = Started()
    tmp = Path(tempfile.mkdtemp(prefix="dockyard-gw-bench-"))
    try:
        ports = None if args.backends == "python" else docker_backends(started, 3)
        kind = f"3 busybox httpd containers ({IMAGE}, a fork per connection, no keep-alive)"
        if ports is None:
            if args.backends == "docker":
                print("docker backends requested but unavailable", file=sys.stderr)
                return 1
            ports = python_backends(started, 3)
            kind = "3 local asyncio HTTP servers (keep-alive)"
        print(f"# backends: {kind}, ports {ports}")
        targets: list[tuple[str, int]] = [("(a) direct", ports[0])]
        targets.append(("(b) dockyard gateway", start_gateway(started, tmp, ports)))
        ng = start_nginx(started, tmp, ports, args.nginx_workers)
        if ng is not None:
            targets.append((f"(c) nginx {args.nginx_workers}w keepalive", ng))
        else:
            print("# nginx not installed: (c) skipped")
        print("# (a) is one backend of the three; (b) and (c) spread over all three")
        fixed_how = "wrk2 -R" if shutil.which("wrk2") else "open-loop asyncio client"
        print(f"# saturation: wrk -t2 -c{args.connections} -d{args.seconds}s; "
              f"fixed rate: {args.rate} req/s for {args.seconds}s ({fixed_how})")
        results: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
        for name, port in targets:
            sat = run_wrk(port, args.seconds, args.connections)
            fix = fixed_rate(port, args.rate, args.seconds)
            results[name] = (sat, fix)

        print(f"{'target':<28}{'sat req/s':>11}{'sat p50 ms':>12}{'sat p99 ms':>12}{'errors':>8}"
              f"{'@rate req/s':>13}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
        for name, (sat, fix) in results.items():
            print(f"{name:<28}{sat['rps']:>11.0f}{sat['p50']:>12.2f}{sat['p99']:>12.2f}{sat['errors']:>8.0f}"
                  f"{fix['rps']:>13.0f}{fix['p50']:>9.2f}{fix['p99']:>9.2f}{fix['errors']:>8.0f}")
        base = results[targets[0][0]][1]
        for name, _ in targets[1:]:
            fix = results[name][1]
            print(f"added by {name:<26} at {args.rate} req/s: p50 {fix['p50'] - base['p50']:+.2f} ms, "
                  f"p99 {fix['p99'] - base['p99']:+.2f} ms")
        if ng is not None:
            gw_rps, ng_rps = results[targets[1][0]][0]["rps"], results[targets[2][0]][0]["rps"]
            print(f"gateway / nginx saturation throughput: {gw_rps / ng_rps:.2f} (target >= 0.5)")
        if args.spaces:
            sys.stdout.flush()
            gw_port = start_gateway(started, tmp, ports, SPACES)
            measure_spaces(gw_port, started.procs[-1].pid, ports, args)
        return 0
    finally:
        started.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
