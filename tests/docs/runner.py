"""Running one page's shell examples in order, in one bash session, as a reader pasting them would.

The session keeps variables, functions and the working directory from block to block; each block's
output goes to a file of its own, and `set -Eeu` ends the session at the first failing command (the
ERR trap names it). No pipefail: a reader's shell has none, and `curl -N STREAM | head` is how the
docs show a stream. `curl` is a shim on PATH that calls the real curl with `-D` and
records every call's HTTP status, so a curl that does not get a 2xx fails the block even inside a
pipe or a `$(...)`. The server URL the docs use, http://127.0.0.1:8080 (`make run`), is pointed at
the test's own server where the shell uses it (not in here-documents or single-quoted bodies, where
it is a container's own address; see examples.point_at).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.docs.examples import Block, point_at

DOCS_URL = "http://127.0.0.1:8080"
DOCS_DOCKER = "127.0.0.1:2375"  # the Docker API `make run` serves (docs/docker-api.md)
DOCS_GATEWAY = "localhost:8000"  # the gateway `make run` starts: web.localhost:8000, 127.0.0.1:8000 below
BLOCK_TIMEOUT = 300.0

CURL_SHIM = r"""#!/usr/bin/env bash
# tests/docs: the real curl, plus one line per call with the HTTP status it got (2xx is checked)
hdr=$(mktemp)
{real} -D "$hdr" "$@"
rc=$?
status=$(tr -d '\r' <"$hdr" | awk '/^HTTP\//{{s=$2}} END{{print s}}')
rm -f "$hdr"
cmd="curl $*"; cmd=${{cmd//$'\n'/ }}; cmd=${{cmd//$'\t'/ }}
printf '%s\t%s\t%s\n' "${{status:-none}}" "$rc" "$cmd" >>"${{DOCS_CURL_LOG:-/dev/null}}"
exit $rc
"""

PRELUDE = r"""
set -Eeu
trap 'echo "[docs-test] exit status $? at line $LINENO of the block: $BASH_COMMAND" >&2' ERR
"""


@dataclass
class Outcome:
    block: Block
    ok: bool
    output: str
    seconds: float
    curls: list[tuple[str, int, str]] = field(default_factory=list)  # (status, curl exit code, command)
    problem: str = ""


class Session:
    """One bash process for the blocks of one page."""

    def __init__(self, work: Path, env: dict[str, str], url: str, gateway: str = DOCS_GATEWAY,
                 docker: str = DOCS_DOCKER):
        self.work, self.url, self.gateway, self.docker = work, url, gateway, docker
        self.dir = work.parent / "blocks"
        self.dir.mkdir(exist_ok=True)
        shim_dir = work.parent / "shims"
        shim_dir.mkdir(exist_ok=True)
        real = shutil.which("curl")
        if real is None:
            raise RuntimeError("the docs examples need curl")
        shim = shim_dir / "curl"
        shim.write_text(CURL_SHIM.format(real=shlex.quote(real)))
        shim.chmod(0o755)
        self.env = {**env, "PATH": f"{shim_dir}:{env['PATH']}"}
        self.n = 0
        self.p = subprocess.Popen(["bash", "--noprofile", "--norc"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=open(self.dir / "session.err", "wb"), cwd=work, env=self.env,
                                  text=True, start_new_session=True)
        self._send(PRELUDE)

    def _send(self, text: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(text + "\n")
        self.p.stdin.flush()

    def run(self, block: Block, timeout: float = BLOCK_TIMEOUT) -> Outcome:
        self.n += 1
        base = self.dir / f"{self.n:02d}"
        script, out, rc_file, curl_log = (base.with_suffix(s) for s in (".sh", ".out", ".rc", ".curl"))
        code = point_at(block.code, DOCS_URL, self.url)
        code = point_at(point_at(code, DOCS_GATEWAY, self.gateway), "127.0.0.1:8000",
                        self.gateway.replace("localhost", "127.0.0.1"))
        code = point_at(code, DOCS_DOCKER, self.docker)
        script.write_text(code + "\n")
        curl_log.touch()
        started = time.monotonic()
        if self.p.poll() is None:
            self._send(f"export DOCS_CURL_LOG={shlex.quote(str(curl_log))}\n"
                       f"source {shlex.quote(str(script))} >{shlex.quote(str(out))} 2>&1 </dev/null\n"
                       f"echo $? >{shlex.quote(str(rc_file))}")
        problem = ""
        while True:
            if rc_file.exists() and rc_file.read_text().strip():
                break
            if self.p.poll() is not None:
                problem = f"the block failed: the shell ended with exit status {self.p.returncode}"
                break
            if time.monotonic() - started > timeout:
                problem = f"the block did not finish within {timeout:.0f} s (killed)"
                self.close()
                break
            time.sleep(0.05)
        seconds = time.monotonic() - started
        output = out.read_text(errors="replace") if out.exists() else ""
        # the ERR trap counts lines within the block: name the line of the markdown file too
        output = re.sub(r"\[docs-test\] (exit status \d+) at line (\d+) of the block",
                        lambda m: f"[docs-test] {m[1]} at line {m[2]} of the block "
                                  f"({block.path.name}:{block.line + int(m[2]) - 1})", output)
        curls = []
        for row in curl_log.read_text().splitlines():
            status, rc, cmd = row.split("\t", 2)
            curls.append((status, int(rc), cmd))
        bad = [c for c in curls if not c[0].startswith("2")]
        if not problem and bad:
            problem = "curl did not get a 2xx:\n" + "\n".join(
                f"  HTTP {status} (curl exit {rc}): {cmd}" for status, rc, cmd in bad)
        return Outcome(block, not problem, output, seconds, curls, problem)

    def close(self) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait()


def report(outcome: Outcome, extra: str = "") -> str:
    """The failure message: where the block is, the block, what went wrong, what it printed."""
    out = outcome.output
    if len(out) > 6000:
        out = "... (earlier output cut)\n" + out[-6000:]
    return (f"\n{'=' * 78}\ndocs example failed at {outcome.block.where} ({outcome.seconds:.1f} s)\n"
            f"{outcome.problem}\n{'-' * 30} the block {'-' * 30}\n{outcome.block.numbered()}\n"
            f"{'-' * 30} its output {'-' * 29}\n{out or '(no output)'}\n{extra}")
