"""Run the gateway alone, from a routes file in the server's wire format (used by bench/gateway.py).

    python -m agent.gateway --listen 127.0.0.1:8000 --routes routes.json

The file holds a list of routes, or `{"routes": [...], "spaces": {namespace: parent or null}}`.
SIGHUP re-reads the routes file; SIGINT/SIGTERM stop.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from typing import Any

from .proxy import Gateway, GatewayError


def _load(path: str) -> tuple[Any, Any]:
    """(routes, spaces) from a routes file: a list of routes, or {"routes": [...], "spaces": {...}}."""
    with open(path) as f:
        data = json.load(f)
    if isinstance(data, dict):
        return data.get("routes"), data.get("spaces")
    return data, None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agent.gateway", description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:8000")
    ap.add_argument("--routes", required=True, help="JSON file: a list of routes in the wire format, or "
                    "{\"routes\": [...], \"spaces\": {...}}")
    ap.add_argument("--connect-timeout", type=float, default=2.0)
    ap.add_argument("--response-timeout", type=float, default=60.0)
    ap.add_argument("--idle-timeout", type=float, default=75.0)
    ap.add_argument("--log-level", default="WARNING")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log = logging.getLogger("dockyard.gateway")

    gw = Gateway(args.listen, connect_timeout=args.connect_timeout, response_timeout=args.response_timeout,
                 idle_timeout=args.idle_timeout)
    try:
        gw.update(*_load(args.routes))
        gw.start()
    except (OSError, ValueError, GatewayError) as e:
        print(f"gateway: {e}", file=sys.stderr)
        return 1
    host, port = gw.address
    print(f"gateway listening on {host}:{port} with {len(gw.table())} routes", flush=True)

    stop = threading.Event()

    def reload(*_: Any) -> None:
        try:
            gw.update(*_load(args.routes))
            log.warning("routes reloaded: %d routes", len(gw.table()))
        except (OSError, ValueError) as e:  # keep serving the old table
            log.error("cannot reload routes: %s", e)

    signal.signal(signal.SIGHUP, reload)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    gw.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
