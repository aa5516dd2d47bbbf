"""What `dockyard up` (`make run`) prints: the README sends newcomers to its "Try:" lines, so they must work.

The unit tests check the lines `up_banner` builds; the integration tests start `dockyard up` for real,
with the admin token from a generated file and from DOCKYARD_ADMIN_TOKEN, and run the printed lines
with bash from another directory.
"""
from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from orchestrator.cli.main import up_banner
from tests.harness import DOCKYARD, free_port
from tests.integration.conftest import engine  # noqa: F401 - the fixture: fails (never skips) without Docker

URL = "http://127.0.0.1:8080"


def try_lines(text: str) -> list[str]:
    """The commands under "Try:" (indented lines that are not notes in parentheses)."""
    after = text.split("Try:\n", 1)[1]
    return [line.strip() for line in after.splitlines() if line.startswith("  ") and not line.strip().startswith("(")]


def test_the_docker_cli_line_comes_last() -> None:
    text = up_banner(URL, "box", "file", Path("/d/admin.token"), "/v/dockyard", None,
                     "DOCKER_HOST=tcp://127.0.0.1:2375 docker --config /d/docker ps")
    assert try_lines(text)[-1] == "DOCKER_HOST=tcp://127.0.0.1:2375 docker --config /d/docker ps"


def test_generated_token_file_is_read_by_absolute_path() -> None:
    text = up_banner(URL, "box", "file", Path("/srv/dock yard/.dockyard/admin.token"), "/srv/dock yard/.venv/bin/dockyard")
    assert "Admin token: /srv/dock yard/.dockyard/admin.token" in text
    assert try_lines(text) == [
        "curl -H \"Authorization: Bearer $(cat '/srv/dock yard/.dockyard/admin.token')\" http://127.0.0.1:8080/v1/nodes",
        "'/srv/dock yard/.venv/bin/dockyard' get nodes"]


def test_token_from_the_environment_is_not_read_from_a_file() -> None:
    text = up_banner(URL, "box", "env", Path("/srv/d/.dockyard/admin.token"), "/srv/d/.venv/bin/dockyard")
    assert "admin.token" not in text  # up did not write that file: nothing may point at it
    assert "Admin token: the DOCKYARD_ADMIN_TOKEN you set" in text
    assert try_lines(text) == ['curl -H "Authorization: Bearer $DOCKYARD_ADMIN_TOKEN" http://127.0.0.1:8080/v1/nodes',
                               "/srv/d/.venv/bin/dockyard get nodes"]


def test_token_from_the_flag_says_which_variable_to_set() -> None:
    text = up_banner(URL, "box", "flag", Path("/srv/d/.dockyard/admin.token"), "/srv/d/.venv/bin/dockyard")
    assert "admin.token" not in text and "--admin-token" in text
    assert "(with DOCKYARD_ADMIN_TOKEN set to that token)" in text
    assert try_lines(text)[0] == 'curl -H "Authorization: Bearer $DOCKYARD_ADMIN_TOKEN" http://127.0.0.1:8080/v1/nodes'


def test_tls_curl_trusts_the_certificate_the_cli_trusts() -> None:
    text = up_banner("https://127.0.0.1:8443", "box", "file", Path("/d/admin.token"), "/v/dockyard", "/etc/d/cert.pem")
    assert try_lines(text)[0] == ('curl --cacert /etc/d/cert.pem -H "Authorization: Bearer $(cat /d/admin.token)" '
                                  "https://127.0.0.1:8443/v1/nodes")


def _run_up(tmp: Path, env_token: str | None) -> tuple[list[str], dict[str, str]]:
    """Start `dockyard up` in tmp/run, wait for its banner, return the Try: lines and the shell env for them."""
    run = tmp / "run"
    run.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    env["DOCKYARD_CONFIG"] = str(tmp / "cli.json")
    if env_token:
        env["DOCKYARD_ADMIN_TOKEN"] = env_token
    node = "t" + secrets.token_hex(3) + "-up"
    docker_api = f"127.0.0.1:{free_port()}"
    p = subprocess.Popen([DOCKYARD, "up", "--port", str(port), "--node-name", node, "--log-level", "warning",
                          "--docker-api", docker_api],
                         cwd=run, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert p.stdout is not None
        for line in p.stdout:
            seen.append(line)
            if line.strip().endswith(" ps"):  # the docker CLI's line, the last
                done.set()
        done.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert done.wait(60), "dockyard up printed no banner within 60 s:\n" + "".join(seen)
        text = "".join(seen)
        assert f"Dockyard is up at http://127.0.0.1:{port}" in text, text
        lines = try_lines(text)
        assert len(lines) == 3 and lines[2].startswith(f"DOCKER_HOST=tcp://{docker_api} docker --config "), text
        shell_env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
        shell_env["DOCKYARD_CONFIG"] = str(tmp / "cli.json")
        if env_token:
            shell_env["DOCKYARD_ADMIN_TOKEN"] = env_token
        results = []
        for line in lines:  # from another directory, as printed
            r = subprocess.run(["bash", "-c", f"set -e; {line.replace('curl ', 'curl -sf ', 1)}"], cwd="/",
                               env=shell_env, capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, f"{line!r} -> exit {r.returncode}\n{r.stdout}\n{r.stderr}\n{text}"
            results.append(r.stdout)
        return lines, {"curl": results[0], "cli": results[1], "docker": results[2], "banner": text}
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.mark.integration
@pytest.mark.parametrize("env_token", [None, "up-test-" + secrets.token_hex(8)], ids=["generated-file", "from-env"])
def test_printed_lines_work_from_any_directory(env_token, engine, tmp_path: Path) -> None:  # noqa: F811
    lines, out = _run_up(tmp_path, env_token)
    assert out["curl"].lstrip().startswith("["), out  # the node list, as JSON
    assert re.search(r"^NAME\s", out["cli"], re.M), out
    assert out["docker"].startswith("CONTAINER ID"), out  # the docker CLI, through the Docker API, as printed
    assert os.path.isabs(lines[1].split()[0].strip("'")), lines
    admin_file = tmp_path / "run" / ".dockyard" / "admin.token"
    if env_token:
        assert "$DOCKYARD_ADMIN_TOKEN" in lines[0] and "admin.token" not in out["banner"]
        assert not admin_file.exists()
    else:
        assert f"$(cat {admin_file.resolve()})" in lines[0]
