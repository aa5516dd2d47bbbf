"""The CLI's connection handling: where server and token come from, and how failures are shown."""
from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from orchestrator.cli.client import ApiError, CliError, Client, Conn, resolve
from orchestrator.cli.main import app
from tests.harness import free_port


@pytest.fixture(autouse=True)
def isolated_config(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKYARD_CONFIG", str(tmp_path / "config.json"))
    monkeypatch.delenv("DOCKYARD_URL", raising=False)
    monkeypatch.delenv("DOCKYARD_TOKEN", raising=False)
    return tmp_path / "config.json"


def test_resolve_defaults_then_config_then_arguments(isolated_config, tmp_path):
    c = resolve(None, None)
    assert (c.url, c.token, c.url_from) == ("http://127.0.0.1:8080", None, "default")
    (tmp_path / "tok").write_text("from-file\n")
    isolated_config.write_text(json.dumps({"url": "http://h:1/", "token_file": str(tmp_path / "tok")}))
    c = resolve(None, None)
    assert (c.url, c.token) == ("http://h:1", "from-file") and "token file" in c.token_from
    isolated_config.write_text(json.dumps({"url": "h:2", "token": "inline"}))
    assert (resolve(None, None).url, resolve(None, None).token) == ("http://h:2", "inline")
    c = resolve("http://flag:3", "flag-token")
    assert (c.url, c.token) == ("http://flag:3", "flag-token")


def test_resolve_unreadable_token_file(isolated_config, tmp_path):
    isolated_config.write_text(json.dumps({"url": "http://h:1", "token_file": str(tmp_path / "missing")}))
    with pytest.raises(CliError, match="cannot read the token file"):
        resolve(None, None)


def _client(handler, token="t") -> Client:
    return Client(Conn("http://test", token, "--server", "--token"), transport=httpx.MockTransport(handler))


def test_api_errors_carry_the_servers_message_and_fields():
    body = {"error": {"code": "validation_error", "message": "invalid request: replicas: too big",
                      "details": [{"field": "replicas", "problem": "too big"}]}}
    c = _client(lambda req: httpx.Response(422, json=body))
    with pytest.raises(ApiError) as e:
        c.put("/v1/services/web", {"replicas": 10**6})
    assert e.value.message == "invalid request: replicas: too big"
    assert e.value.status == 422 and e.value.api_code == "validation_error"
    assert e.value.detail_lines == ["replicas: too big"]


def test_unauthorized_hints_at_the_token_source():
    body = {"error": {"code": "unauthorized", "message": "invalid token", "details": []}}
    with pytest.raises(ApiError) as e:
        _client(lambda req: httpx.Response(401, json=body)).get("/v1/services")
    assert "the token came from --token" in e.value.hints[0]
    with pytest.raises(ApiError) as e:
        _client(lambda req: httpx.Response(401, json=body), token=None).get("/v1/services")
    assert "no token was given" in e.value.hints[0]


def test_missing_endpoint_is_named_not_a_missing_object():
    nf = {"error": {"code": "not_found", "message": "Not Found", "details": []}}
    with pytest.raises(ApiError, match="has no endpoint POST /v1/services/web/rollout/pause"):
        _client(lambda req: httpx.Response(404, json=nf)).post("/v1/services/web/rollout/pause")
    missing = {"error": {"code": "not_found", "message": "service 'web' not found", "details": []}}
    c = _client(lambda req: httpx.Response(404, json=missing))
    assert c.get("/v1/services/web", ok404=True) is None
    with pytest.raises(ApiError, match="service 'web' not found"):
        c.get("/v1/services/web")


def test_bearer_token_is_sent():
    seen = {}

    def handler(req: httpx.Request) -> httpx.Response:
        seen["auth"] = req.headers.get("authorization")
        return httpx.Response(200, json=[])

    assert _client(handler, token="s3cret").get("/v1/services") == []
    assert seen["auth"] == "Bearer s3cret"


def test_connection_refused_names_the_url_and_exits_1():
    url = f"http://127.0.0.1:{free_port()}"
    r = CliRunner().invoke(app, ["get", "services"], env={"DOCKYARD_URL": url, "DOCKYARD_TOKEN": "x"})
    assert r.exit_code == 1
    assert f"cannot connect to the Dockyard server at {url}: connection refused" in r.output
    assert "DOCKYARD_URL" in r.output and "Traceback" not in r.output


def test_usage_errors_exit_2():
    runner = CliRunner()
    assert runner.invoke(app, ["get", "nonsense"]).exit_code == 2
    assert runner.invoke(app, ["scale", "web", "-1"]).exit_code == 2
    assert runner.invoke(app, ["apply"]).exit_code == 2
    r = runner.invoke(app, ["login", "--server", "http://x"])
    assert r.exit_code == 2 and "exactly one of --token and --token-file" in r.output


def test_manifest_errors_exit_1_before_any_request(tmp_path):
    f = tmp_path / "two.yaml"
    f.write_text("name: a\nimage: x\n---\nname: b\nimage: x\n")
    r = CliRunner().invoke(app, ["apply", "-f", str(f)], env={"DOCKYARD_URL": f"http://127.0.0.1:{free_port()}"})
    assert r.exit_code == 1 and "several documents form a stack" in r.output
    r = CliRunner().invoke(app, ["apply", "-f", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 1 and "does not exist" in r.output


def test_login_without_verify_writes_the_config(isolated_config):
    r = CliRunner().invoke(app, ["login", "--server", "10.0.0.1:8080", "--token", "abc", "--no-verify"])
    assert r.exit_code == 0, r.output
    assert json.loads(isolated_config.read_text()) == {"url": "http://10.0.0.1:8080", "token": "abc"}


def _leaves(cmd, path=()):  # type: ignore[no-untyped-def]
    if getattr(cmd, "commands", None) is None:
        yield path, cmd
        return
    for name in cmd.list_commands(None):  # the root adds the client commands when they are listed
        sub = cmd.get_command(None, name)
        if not sub.hidden:
            yield from _leaves(sub, (*path, name))


def test_every_command_has_help_with_an_example():
    import typer.main

    leaves = dict(_leaves(typer.main.get_command(app)))
    assert {("apply",), ("get", "services"), ("get", "stacks"), ("describe", "service"), ("scale",), ("delete", "stack"),
            ("rollout", "status"), ("rollout", "undo"), ("rollout", "pause"), ("rollout", "resume"), ("logs",),
            ("events",), ("nodes", "drain"), ("nodes", "rm"), ("compose", "up"), ("compose", "convert"),
            ("login",), ("token", "create"), ("token", "ls"), ("token", "rm"), ("join-token", "rotate")} <= set(leaves)
    runner = CliRunner()
    for path, cmd in leaves.items():
        assert "Example: " in (cmd.help or ""), f"dockyard {' '.join(path)} has no example in its help"
        r = runner.invoke(app, [*path, "--help"])
        assert r.exit_code == 0 and "Example: " in r.output, path
