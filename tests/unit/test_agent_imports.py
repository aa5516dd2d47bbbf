"""`dockyard agent` imports only what an agent runs (docs/performance.md, Memory).

The agent's resident memory is mostly its imports: the server's stack (FastAPI, Starlette,
SQLAlchemy, pydantic), the client commands' (httpx, Rich tables, YAML) and the features a node
may not use (exec, gateway) cost tens of MiB. Each check runs in a fresh interpreter, since this
test process has imported everything already.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# never on the agent's path: the server's, the client commands', and pydantic's (agent/wire.py)
HEAVY = ["fastapi", "starlette", "sqlalchemy", "pydantic", "pydantic_core", "httpx", "httpcore", "anyio",
         "rich", "pygments", "yaml", "jinja2", "uvicorn", "alembic", "apscheduler", "websockets",
         "orchestrator.errors", "orchestrator.api", "orchestrator.spec", "orchestrator.protocol",
         "orchestrator.cli.client", "orchestrator.cli.stack_cmd"]
# only when the feature is used: a gateway, an exec session, the /metrics page
LAZY = ["agent.gateway", "agent.exec", "prometheus_client", "httptools", "uvloop"]

PROBE = """
import importlib.metadata, json, sys
sys.argv = ["dockyard", "agent"]  # no join token: the command stops with exit 2 after its imports
app = importlib.metadata.entry_points(group="console_scripts", name="dockyard")[0].load()  # [project.scripts]
try:
    app()
except SystemExit as exc:
    code = exc.code
import agent.main, agent.metrics_reporter  # what run_agent starts, imported whole
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _agent_modules() -> tuple[object, set[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return got["code"], set(got["modules"])


def _loaded(modules: set[str], names: list[str]) -> list[str]:
    return [n for n in names if n in modules or any(m.startswith(n + ".") for m in modules)]


def test_the_agent_entry_path_imports_neither_the_server_nor_the_client_commands():
    code, modules = _agent_modules()
    assert code == 2  # the agent command ran (and refused to start without a join token)
    assert "agent.main" in modules and "typer" in modules
    assert _loaded(modules, HEAVY) == []
    assert _loaded(modules, LAZY) == []


def test_the_client_commands_are_still_there_when_asked_for():
    out = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "get", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "services" in out.stdout


# --- the light parser gives `agent` what Typer would (orchestrator/cli/light.py) ----------------

CASES = [
    ([], {}),
    (["--server", "https://a:1,https://b:2", "--join-token", "t", "--node-name", "n1", "--label", "zone=a",
      "--label", "disk=ssd", "--cpus", "2", "--memory", "8Gi", "--concurrency", "3", "--gateway-listen=0.0.0.0:8000",
      "--drain-seconds", "0", "--gateway-timeout", "3600", "--gateway-access-log", "--metrics-interval", "2.5",
      "--log-level", "debug", "--ca-file", "/tmp/ca.pem", "--listen", "0.0.0.0:0", "--address", "10.0.0.1"], {}),
    ([], {"DOCKYARD_JOIN_TOKEN": "t", "DOCKYARD_LABEL": "a=b  c=d", "DOCKYARD_CPUS": "1.5e0",
          "DOCKYARD_GATEWAY_ACCESS_LOG": "yes", "DOCKYARD_METRICS_INTERVAL": "0", "DOCKYARD_AGENT_CONCURRENCY": "+4",
          "DOCKYARD_CA_FILE": "ca.pem", "DOCKYARD_SERVER": ""}),
    (["--label", "x=1", "--cpus", ".5", "--server", "http://s:1", "--server", "http://s:2"],
     {"DOCKYARD_LABEL": "a=b", "DOCKYARD_GATEWAY_ACCESS_LOG": "0", "DOCKYARD_CPUS": "7"}),
]


def _typer_values(argv: list[str]) -> dict:
    import typer.main

    from orchestrator.cli.main import app

    group = typer.main.get_command(app)
    command = group.get_command(group.make_context("dockyard", ["agent"]), "agent")
    return dict(command.make_context("agent", list(argv)).params)


def test_the_light_parser_gives_the_agent_command_what_typer_would(monkeypatch):
    from orchestrator.cli import light
    from orchestrator.cli.main import agent

    for argv, env in CASES:
        for k in [k for k in os.environ if k.startswith("DOCKYARD_")]:
            monkeypatch.delenv(k)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert light.parse(agent, argv) == _typer_values(argv), (argv, env)


def test_what_the_light_parser_does_not_take_whole_is_left_to_typer():
    import pytest

    from orchestrator.cli import light
    from orchestrator.cli.main import agent

    for argv, env in [(["--help"], {}), (["-h"], {}), (["--bogus"], {}), (["positional"], {}), (["--server"], {}),
                      (["--concurrency", "2.0"], {}), (["--drain-seconds", "3601"], {}), (["--cpus", "nan"], {}),
                      (["--gateway-access-log=1"], {}), ([], {"DOCKYARD_GATEWAY_ACCESS_LOG": "maybe"}),
                      ([], {"DOCKYARD_METRICS_INTERVAL": "-1"})]:
        with pytest.raises(light.NotPlain):
            light.parse(agent, argv, env)
