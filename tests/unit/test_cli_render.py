"""Output helpers of the CLI: formatters, tables, -o formats, stacks, rollout verdicts, SSE."""
from __future__ import annotations

import json

import pytest
import yaml

from orchestrator.cli import render
from orchestrator.cli.get_cmd import SERVICE_COLS, describe_service_text, group_stacks
from orchestrator.cli.observe import event_line, parse_sse, prefixed
from orchestrator.cli.render import Col, Output, age, epoch, fmt_bytes, fmt_ports, render_table, rows
from orchestrator.cli.rollout import failure_hints, verdict

NOW = 1_700_000_000.0


@pytest.mark.parametrize("delta, text", [(5, "5s"), (119, "119s"), (120, "2m"), (7199, "119m"), (7200, "2h"),
                                         (172800, "2d"), (-3, "0s")])
def test_age(delta, text):
    assert age(NOW - delta, now=NOW) == text


def test_age_of_iso_strings_and_unknowns():
    assert epoch("2023-11-14T22:13:20Z") == NOW
    assert age("2023-11-14T22:12:20Z", now=NOW) == "60s"
    assert age(None) == "-" and age("") == "-" and age("not a time") == "-"


@pytest.mark.parametrize("n, text", [(None, "-"), (512, "512"), (2048, "2Ki"), (512 * 1024**2, "512Mi"),
                                     (1536 * 1024**2, "1.5Gi"), (25 * 1024**3 + 1, "25Gi"), (150 * 1024**3, "150Gi")])
def test_fmt_bytes(n, text):
    assert fmt_bytes(n) == text


def test_fmt_ports():
    assert fmt_ports([{"container_port": 80, "host_port": 8080, "protocol": "tcp"},
                      {"container_port": 53, "protocol": "udp"}]) == "8080:80/tcp,53/udp"
    assert fmt_ports([]) == "-" and fmt_ports(None) == "-"


SVC = {"name": "web", "stack": None, "replicas": 3, "revision": 2, "generation": 4, "version": 4,
       "spec": {"image": "nginx:1", "ports": [{"container_port": 80, "host_port": None, "protocol": "tcp"}]},
       "status": {"replicas": 3, "running": 3, "ready": 2, "updated": 3, "pending": 0, "message": "1 unhealthy"},
       "rollout": {"phase": "progressing", "reason": ""}, "created_at": None, "updated_at": None}


def test_rows_plain_and_wide():
    headers, body = rows([SVC], SERVICE_COLS, wide=False)
    assert headers == ["NAME", "STACK", "READY", "UP-TO-DATE", "REVISION", "ROLLOUT", "AGE"]
    assert body == [["web", "-", "2/3", "3", "2", "progressing", "-"]]
    headers, body = rows([SVC], SERVICE_COLS, wide=True)
    assert headers[-4:] == ["IMAGE", "PORTS", "URL", "MESSAGE"]
    assert body[0][-4:] == ["nginx:1", "80/tcp", "-", "1 unhealthy"]


def test_render_table_is_aligned_plain_text_without_trailing_spaces():
    out = render_table(["NAME", "STATE"], [["a-long-name", "running"], ["b", "[red]x"]])
    lines = out.splitlines()
    assert lines[0].startswith("NAME") and lines[0].index("STATE") == lines[1].index("running")
    assert lines[2].endswith("[red]x")  # cell text is never read as markup
    assert all(line == line.rstrip() for line in lines) and "\x1b" not in out


def test_render_table_never_truncates_wide_rows():
    long = "x" * 300
    assert long in render_table(["A", "B"], [["1", long]])


def test_emit_formats(capsys):
    cols = [Col("NAME", lambda x: x["name"]), Col("N", lambda x: x["n"], wide=True)]
    data = [{"name": "a", "n": 1}]
    render.emit(data, Output.json, cols)
    assert json.loads(capsys.readouterr().out) == data
    render.emit(data, Output.yaml, cols)
    assert yaml.safe_load(capsys.readouterr().out) == data
    render.emit(data, Output.table, cols)
    assert capsys.readouterr().out.split() == ["NAME", "a"]
    render.emit(data, Output.wide, cols)
    assert capsys.readouterr().out.split() == ["NAME", "N", "a", "1"]
    render.emit(data + [{"id": "x1"}], Output.name, cols)
    assert capsys.readouterr().out == "a\nx1\n"
    render.emit([], Output.table, cols, empty="no things")
    assert capsys.readouterr().err.strip() == "no things"


def test_group_stacks():
    svcs = [{"name": "web", "stack": "shop", "replicas": 2, "status": {"ready": 1}},
            {"name": "db", "stack": "shop", "replicas": 1, "status": {"ready": 1}},
            {"name": "lone", "stack": None, "replicas": 1, "status": {"ready": 1}},
            {"name": "prom", "stack": "mon", "replicas": 1, "status": {"ready": 0}}]
    assert group_stacks(svcs) == [
        {"name": "mon", "services": ["prom"], "replicas": 1, "ready": 0},
        {"name": "shop", "services": ["db", "web"], "replicas": 3, "ready": 2},
    ]


def test_describe_text_has_every_section():
    inst = [{"id": "abc", "service": "web", "slot": 1, "revision": 2, "node": "n1", "state": "running",
             "healthy": True, "restart_count": 0, "created_at": None}]
    ev = [{"id": 1, "time": None, "kind": "service_created", "service": "web", "node": None, "message": "created"}]
    text = describe_service_text(SVC, inst, ev)
    for part in ("Name:      web", "Namespace: default", "Rollout:   progressing", "Spec:\n  image: nginx:1",
                 "Instances:\n  ID", "abc", "healthy", "Events (newest first):", "service/web", "created"):
        assert part in text
    assert "Instances:\n  none" in describe_service_text(SVC, [], [])
    # in a space: where its requests fall back, and what they inherit
    space = {"name": "alice", "parent": "dev", "chain": ["alice", "dev"],
             "inherited": [{"name": "front", "from": "dev"}]}
    text = describe_service_text({**SVC, "namespace": "alice"}, [], [], None, space)
    assert "Namespace: alice" in text and "Space:     falls back alice → dev" in text
    assert "Inherited: front (from dev)" in text


def _rollout(**kw):
    return {"service": "web", "revision": 3, "phase": "progressing", "reason": "", "replicas": 3, "updated": 1,
            "ready": 2, "running": 3, **kw}


def test_rollout_verdicts_with_new_and_old_counts():
    r = _rollout(new=2, new_ready=1, old=1, ready=3)
    assert verdict(r).message.endswith("2/3 updated, 1/3 ready, 1 old left (progressing)")
    assert not verdict(_rollout(phase="complete", new=3, new_ready=3, old=1)).done
    assert verdict(_rollout(phase="complete", new=3, new_ready=3, old=0)).done
    assert verdict(_rollout(phase="complete", new=3, new_ready=2, old=0, updated=3, ready=3)).done is False


def test_rollout_verdicts():
    v = verdict(_rollout())
    assert not v.done and "1/3 updated, 2/3 ready (progressing)" in v.message
    assert verdict(_rollout(phase="complete", updated=3, ready=3)).done
    assert not verdict(_rollout(phase="complete", updated=3, ready=2)).done  # a new service still starting
    assert verdict(_rollout(phase="complete", replicas=0, updated=0, ready=0)).done
    for phase in ("paused", "rolled_back", "failed"):
        v = verdict(_rollout(phase=phase, reason="2 new instance(s) failed"))
        assert v.done and v.failed and "2 new instance(s) failed" in v.message
    assert "rollout resume" in failure_hints("web", verdict(_rollout(phase="paused")))[1]
    assert "apply it again" in failure_hints("web", verdict(_rollout(phase="rolled_back")))[1]


def test_parse_sse():
    stream = [": keep-alive", "", "id: 7", "event: service_created", 'data: {"id": 7, "kind": "service_created"}', "",
              ": keep-alive", "", "data: not json", "", 'data: {"id": 8,', 'data:  "kind": "x"}']
    assert list(parse_sse(stream)) == [{"id": 7, "kind": "service_created"}, {"id": 8, "kind": "x"}]


def test_event_line_and_log_prefix():
    e = {"time": "2024-01-01T00:00:00Z", "kind": "node_down", "service": None, "node": "n1", "message": "gone"}
    assert event_line(e).split() == ["2024-01-01T00:00:00Z", "node_down", "node/n1", "gone"]
    assert prefixed("web.1", 6, "hello") == "web.1  | hello"


def test_service_urls_use_the_gateways_port():
    from orchestrator.cli.get_cmd import service_urls

    table = {"routes": [{"service": "web", "host": "web.localhost", "path_prefix": "/"},
                        {"service": "web", "host": "shop.example.com", "path_prefix": "/api"},
                        {"service": "db", "host": "db.localhost", "path_prefix": "/"}],
             "gateways": [{"node": "a", "listen": "127.0.0.1:8000"}, {"node": "b", "listen": "0.0.0.0:8000"},
                          {"node": "c", "listen": "0.0.0.0:80"}]}
    assert service_urls(table, "web") == ["http://web.localhost:8000/", "http://shop.example.com:8000/api"]
    assert service_urls({**table, "gateways": [{"node": "c", "listen": "0.0.0.0:80"}]}, "db") == ["http://db.localhost/"]
    assert service_urls({**table, "gateways": []}, "db") == ["http://db.localhost/"]
    assert service_urls(table, "nope") == []
    text = describe_service_text(SVC, [], [], ["http://web.localhost:8000/"])
    assert "URL:" in text and "http://web.localhost:8000/" in text
