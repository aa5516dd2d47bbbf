"""The shell examples of README.md and docs/*.md, run as written against a real server and agent.

One cluster per page (tests/harness.py: a real `dockyard server` and `dockyard agent` on the real
engine); the page's blocks run in order in one bash session (tests/docs/runner.py), so a block may
rely on what the blocks above it did. The session starts where a reader of the README stands after
`make run`, in a scratch copy of the repository's top: `.dockyard/admin.token` and `join.token` hold
the cluster's tokens, `.venv` is this repository's, `dockyard` is on PATH, the CLI's config file
names the server and the token file (as `dockyard up` writes it), and TOKEN and API are set.
Every block must exit 0 and every curl must get a 2xx. See docs/testing.md.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.docs.examples import ROOT, blocks, pages
from tests.docs.runner import DOCS_URL, Session, report
from orchestrator.dockerapi.serve import write_client_config
from tests.harness import ADMIN, JOIN, Cluster, free_port
from tests.integration.conftest import engine  # noqa: F401 - the fixture: fails (never skips) without Docker

pytestmark = pytest.mark.integration

PAGES = [p for p in pages() if any(b.not_run is None for b in blocks(p))]


def _page_id(p: Path) -> str:
    return str(p.relative_to(ROOT))


def _workdir(tmp: Path, url: str) -> tuple[Path, dict[str, str]]:
    work = tmp / "work"
    (work / ".dockyard").mkdir(parents=True)
    for name, secret in (("admin.token", ADMIN), ("join.token", JOIN)):
        f = work / ".dockyard" / name
        f.write_text(secret + "\n")
        f.chmod(0o600)
    write_client_config(work / ".dockyard", ADMIN)  # .dockyard/docker/config.json, as `dockyard up` writes it
    (work / ".venv").symlink_to(ROOT / ".venv")
    home = tmp / "home"
    (home / ".config" / "dockyard").mkdir(parents=True)
    config = home / ".config" / "dockyard" / "config.json"
    config.write_text(json.dumps({"url": url, "token_file": str(work / ".dockyard" / "admin.token")}))
    (tmp / "scratch").mkdir()
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKYARD_", "XDG_CONFIG"))}
    env = {**keep, "HOME": str(home), "TMPDIR": str(tmp / "scratch"), "LC_ALL": "C.UTF-8",
           "PATH": f"{ROOT / '.venv' / 'bin'}:{keep.get('PATH', '/usr/bin:/bin')}",
           "TOKEN": ADMIN, "API": url}
    return work, env


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_page_examples(page: Path, engine, tmp_path: Path) -> None:  # noqa: F811
    for tool in ("jq", "curl", "sed"):
        if shutil.which(tool) is None:
            pytest.fail(f"the docs examples need {tool} (apt-get install -y {tool})")
    page_blocks = [b for b in blocks(page) if b.not_run is None]
    docker_api = f"127.0.0.1:{free_port()}"  # stands in for make run's 127.0.0.1:2375 (runner.DOCS_DOCKER)
    cluster = Cluster(tmp_path, server_args=["--docker-api", docker_api])
    session = None
    try:
        cluster.start_server()
        # labels the placement examples of docs/cluster.md select on
        gateway = free_port()  # stands in for make run's 127.0.0.1:8000 (runner.DOCS_GATEWAY)
        cluster.start_agent("a", "--label", "zone=a", "--label", "disk=ssd", "--gateway-listen", f"127.0.0.1:{gateway}")
        work, env = _workdir(tmp_path, cluster.url)
        session = Session(work, env, cluster.url, f"localhost:{gateway}", docker_api)
        ran = []
        for block in page_blocks:
            outcome = session.run(block)
            ran.append(f"{block.where}: {outcome.seconds:.1f} s, {len(outcome.curls)} curl call(s)")
            if not outcome.ok:
                logs = "".join(f"{'-' * 30} {log.name} (tail) {'-' * 30}\n{log.read_text(errors='replace')[-3000:]}\n"
                               for log in sorted(tmp_path.glob("*.log")))
                done = "\n".join(ran[:-1]) or "(none)"
                pytest.fail(report(outcome, f"blocks of this page that passed before it:\n{done}\n{logs}"
                                            f"(the server ran at {cluster.url}, standing in for {DOCS_URL})"),
                            pytrace=False)
        print(f"\n{_page_id(page)}: {len(ran)} block(s) ran\n" + "\n".join(ran))
    finally:
        if session is not None:
            session.close()
        cluster.close()
