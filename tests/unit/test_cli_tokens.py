"""`dockyard token` / `join-token` and the CLI's TLS handling, without a server: pure helpers and mocked HTTP."""
from __future__ import annotations

import json
import ssl

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.cli import tokens
from orchestrator.cli.client import CliError, Client, Conn, resolve
from orchestrator.cli.main import app


@pytest.fixture(autouse=True)
def isolated_config(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKYARD_CONFIG", str(tmp_path / "config.json"))
    for var in ("DOCKYARD_URL", "DOCKYARD_TOKEN", "DOCKYARD_CA_FILE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "config.json"


# ---------------------------------------------------------------- pure helpers

@pytest.mark.parametrize("text, seconds", [
    ("90", 90), ("45s", 45), ("30m", 1800), ("24h", 86400), ("30d", 30 * 86400), ("2w", 14 * 86400),
    ("1d12h", 1.5 * 86400), ("1h30m", 5400), ("1.5h", 5400), (" 24H ", 86400), ("3650d", 3650 * 86400),
])
def test_parse_duration(text, seconds):
    assert tokens.parse_duration(text) == seconds


@pytest.mark.parametrize("bad, message", [
    ("", "invalid duration"), ("24", None), ("x", "invalid duration"), ("24 h", "invalid duration"),
    ("-5m", "invalid duration"), ("1y", "invalid duration"), ("h", "invalid duration"), ("5m3", "invalid duration"),
    ("0", "longer than zero"), ("0s", "longer than zero"), ("3651d", "longer than the 10 years"),
])
def test_bad_durations(bad, message):
    if message is None:  # a bare number is seconds
        assert tokens.parse_duration(bad) == 24
        return
    with pytest.raises(ValueError, match=message):
        tokens.parse_duration(bad)


def test_until():
    now = 1_000_000.0
    assert tokens.until(None, now) == "never"
    assert tokens.until(now + 30, now) == "in 30s"
    assert tokens.until(now + 86400 - 3, now) == "in 24h"  # a fresh 24h token, seconds later
    assert tokens.until(now + 30 * 86400, now) == "in 30d"
    assert tokens.until(now - 300, now) == "expired 5m ago"
    assert tokens.until("1970-01-12T13:46:40Z", now + 7200) == "expired 2h ago"


# ---------------------------------------------------------------- commands against a mocked server

TOKEN = {"id": "tok_1", "name": "ci", "role": "operator", "created_at": "2030-01-01T00:00:00Z",
         "last_used_at": None, "expires_at": None, "expired": False}


@pytest.fixture
def server(monkeypatch):
    """A fake API behind the token commands; `calls` records (method, path, body)."""
    calls: list[tuple[str, str, object]] = []
    listed = [TOKEN, {**TOKEN, "id": "bootstrap-admin", "name": "admin", "role": "admin"}]

    def handler(req: httpx.Request) -> httpx.Response:
        body = json.loads(req.content) if req.content else None
        calls.append((req.method, req.url.path, body))
        if req.method == "POST" and req.url.path == "/v1/tokens":
            return httpx.Response(201, json={**TOKEN, "name": body["name"], "role": body["role"], "token": "dyt_secret",
                                             "expires_at": "2999-01-01T00:00:00Z" if "expires_in" in body else None})
        if req.method == "GET" and req.url.path == "/v1/tokens":
            return httpx.Response(200, json=listed)
        if req.method == "DELETE" and req.url.path == "/v1/tokens/tok_1":
            return httpx.Response(200, json={"id": "tok_1", "name": "ci", "deleted": True})
        if req.method == "DELETE":
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "token not found", "details": []}})
        if req.url.path == "/v1/cluster/join-token/rotate":
            return httpx.Response(200, json={"join_token": "dyj_new", "message": "new join token"})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "Not Found", "details": []}})

    c = Client(Conn("http://test", "t"), transport=httpx.MockTransport(handler))
    monkeypatch.setattr(tokens, "client", lambda: c)
    return calls


def run(*args: str):  # type: ignore[no-untyped-def]
    r = CliRunner().invoke(app, list(args))
    assert "Traceback" not in r.output
    return r


def test_create_prints_the_secret_alone_and_a_note(server):
    r = run("token", "create", "ci", "--role", "operator", "--expires-in", "1d12h")
    assert r.exit_code == 0, r.output
    assert r.stdout == "dyt_secret\n"
    assert "token/ci created: id tok_1, role operator, expires 2999-01-01T00:00:00Z" in r.stderr
    assert "shown only once" in r.stderr
    assert server == [("POST", "/v1/tokens", {"name": "ci", "role": "operator", "expires_in": 129600.0})]
    r = run("token", "create", "ro", "-r", "VIEWER", "-o", "json")
    assert json.loads(r.stdout)["token"] == "dyt_secret" and "never expires" in r.stderr
    assert server[-1][2] == {"name": "ro", "role": "viewer"}
    assert yaml.safe_load(run("token", "create", "y", "--role", "admin", "-o", "yaml").stdout)["role"] == "admin"


@pytest.mark.parametrize("args, message", [
    (["token", "create", "ci"], "Missing option '--role'"),
    (["token", "create", "ci", "--role", "root"], "--role"),
    (["token", "create", "ci", "--role", "viewer", "--expires-in", "soon"], "invalid duration 'soon'"),
    (["token", "create", "ci", "--role", "viewer", "-o", "table"], "--output"),
    (["token", "rm"], "Missing argument"),
])
def test_usage_mistakes_exit_2_before_any_request(server, args, message):
    r = run(*args)
    assert r.exit_code == 2 and message in r.output
    assert server == []


def test_ls_formats(server):
    table = run("token", "ls").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "ROLE", "AGE", "LAST-USED", "EXPIRES"]
    assert table[1].split()[:3] == ["tok_1", "ci", "operator"] and table[1].split()[-2:] == ["never", "never"]
    assert "EXPIRES-AT" in run("token", "ls", "-o", "wide").stdout
    assert [t["name"] for t in json.loads(run("token", "ls", "-o", "json").stdout)] == ["ci", "admin"]
    assert yaml.safe_load(run("token", "ls", "-o", "yaml").stdout)[0]["id"] == "tok_1"


def test_rm_by_id_or_by_name(server):
    r = run("token", "rm", "tok_1")
    assert r.exit_code == 0 and r.stdout == "token/ci (tok_1) revoked\n"
    server.clear()
    assert run("token", "rm", "ci").stdout == "token/ci (tok_1) revoked\n"
    assert [c[:2] for c in server] == [("DELETE", "/v1/tokens/ci"), ("GET", "/v1/tokens"), ("DELETE", "/v1/tokens/tok_1")]
    r = run("token", "rm", "nope")
    assert r.exit_code == 1 and "no token has the id or name 'nope'" in r.output and "dockyard token ls" in r.output


def test_join_token_rotate(server):
    r = run("join-token", "rotate")
    assert r.exit_code == 0 and r.stdout == "dyj_new\n"
    assert "no longer admits nodes" in r.stderr and "shown only once" in r.stderr
    assert json.loads(run("join-token", "rotate", "-o", "json").stdout)["join_token"] == "dyj_new"


# ---------------------------------------------------------------- --ca-file and TLS failures

def test_ca_file_comes_from_the_argument_else_the_config(isolated_config, tmp_path):
    assert (resolve(None, None).ca_file, resolve(None, None).ca_from) == (None, "none")
    isolated_config.write_text(json.dumps({"url": "https://h:1", "ca_file": "/etc/dockyard/ca.pem"}))
    c = resolve(None, None)
    assert c.ca_file == "/etc/dockyard/ca.pem" and c.ca_from.startswith("config file")
    c = resolve(None, None, "/tmp/other.pem")
    assert (c.ca_file, c.ca_from) == ("/tmp/other.pem", "--ca-file")


def test_unusable_ca_file_is_a_clear_error(tmp_path):
    with pytest.raises(CliError, match=r"cannot use .*missing.pem \(from DOCKYARD_CA_FILE\) as a CA bundle"):
        Client(Conn("https://h", None, ca_file=str(tmp_path / "missing.pem"), ca_from="DOCKYARD_CA_FILE"))
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(CliError, match="as a CA bundle") as e:
        Client(Conn("https://h", None, ca_file=str(tmp_path / "junk.pem"), ca_from="--ca-file"))
    assert "--ca-file / DOCKYARD_CA_FILE" in e.value.hints[0]


def _failing(exc: Exception, url: str = "https://dockyard.example:8443", ca_file: str | None = None) -> CliError:
    def handler(req: httpx.Request) -> httpx.Response:
        raise exc

    c = Client(Conn(url, "t", "--server"), transport=httpx.MockTransport(handler))
    c.conn.ca_file, c.conn.ca_from = ca_file, "--ca-file"  # the mock never verifies: only the messages are tested
    with pytest.raises(CliError) as e:
        c.get("/v1/services")
    return e.value


def _verify_error(message: str) -> httpx.ConnectError:
    cause = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}")
    cause.verify_message = message
    try:
        raise httpx.ConnectError(str(cause)) from cause
    except httpx.ConnectError as exc:
        return exc


def test_untrusted_certificate_hints_at_ca_file():
    err = _failing(_verify_error("self-signed certificate"))
    assert err.message == ("cannot verify the TLS certificate of the Dockyard server at "
                           "https://dockyard.example:8443: self-signed certificate")
    assert "--ca-file" in err.hints[0] and "DOCKYARD_CA_FILE" in err.hints[0]
    assert "cannot connect" not in err.message
    err = _failing(_verify_error("unable to get local issuer certificate"), ca_file="/etc/ca.pem")
    assert "the CA bundle /etc/ca.pem (from --ca-file) does not vouch for this certificate" in err.hints[0]
    err = _failing(_verify_error("Hostname mismatch, certificate is not valid for 'dockyard.example'."))
    assert "the certificate does not name dockyard.example" in err.hints[0]
    # only the text of the error (another TLS stack): still recognised
    err = _failing(httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"))
    assert err.message.startswith("cannot verify the TLS certificate") and "--ca-file" in err.hints[0]


def test_http_and_https_mixed_up():
    err = _failing(httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)"))
    assert err.message == "the server at https://dockyard.example:8443 does not speak HTTPS"
    assert "use an http:// URL" in err.hints[0]
    err = _failing(httpx.RemoteProtocolError("Server disconnected without sending a response."),
                   url="http://dockyard.example:8443")
    assert "closed the connection without answering" in err.message and "https://" in err.hints[0]


def test_refused_connection_is_still_cannot_connect():
    err = _failing(httpx.ConnectError("[Errno 111] Connection refused"))
    assert err.message == "cannot connect to the Dockyard server at https://dockyard.example:8443: connection refused"


def test_ca_file_is_an_option_of_every_client_command():
    for args in (["get", "services"], ["token", "ls"], ["apply"], ["nodes", "drain"], ["login"]):
        r = CliRunner().invoke(app, [*args, "--help"])
        assert "--ca-file" in r.output and "DOCKYARD_CA_FILE" in r.output, args


def test_login_saves_the_ca_file(isolated_config, tmp_path):
    r = CliRunner().invoke(app, ["login", "--server", "https://h:1", "--token", "abc", "--ca-file",
                                 str(tmp_path / "ca.pem"), "--no-verify"])
    assert r.exit_code == 0, r.output
    assert json.loads(isolated_config.read_text()) == {"url": "https://h:1", "token": "abc",
                                                       "ca_file": str(tmp_path / "ca.pem")}
