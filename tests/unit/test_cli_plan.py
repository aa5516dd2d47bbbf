"""The pure helpers of `dockyard apply`: reading manifests, checking them, planning changes."""
from __future__ import annotations

import pytest

from orchestrator.cli.plan import (
    Change, DocumentError, diff, flatten, parse_documents, plan_delete, plan_service, prepare, render_plan, stack_of,
)


def test_parse_yaml_documents_skips_empty_ones():
    docs = parse_documents("name: a\nimage: x\n---\n---\nname: b\nimage: y\n---\n")
    assert [d["name"] for d in docs] == ["a", "b"]


def test_parse_json_object_and_list():
    assert parse_documents('{"name": "a", "image": "x"}') == [{"name": "a", "image": "x"}]
    assert [d["name"] for d in parse_documents('[{"name": "a"}, {"name": "b"}]')] == ["a", "b"]


@pytest.mark.parametrize("text, message", [
    ("", "holds no documents"),
    ("- 1\n- 2\n", "document 1 must be a mapping"),
    ("name: [unclosed\n", "not valid YAML or JSON"),
    ("just a string", "must be a mapping"),
])
def test_parse_errors(text, message):
    with pytest.raises(DocumentError, match=message):
        parse_documents(text, "f.yaml")


def test_prepare_strips_name_and_keeps_body():
    [(name, body)] = prepare([{"name": "web", "image": "nginx", "replicas": 2}])
    assert name == "web" and body == {"image": "nginx", "replicas": 2}


def test_prepare_single_document_needs_no_stack_but_takes_one():
    assert "stack" not in prepare([{"name": "web", "image": "x"}])[0][1]
    assert prepare([{"name": "web", "image": "x"}], "shop")[0][1]["stack"] == "shop"


def test_prepare_several_documents_need_a_stack():
    docs = [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]
    with pytest.raises(DocumentError, match="--stack NAME or a 'stack' key.*missing in a, b"):
        prepare(docs)
    items = prepare(docs, "shop")
    assert [b["stack"] for _, b in items] == ["shop", "shop"] and stack_of(items) == "shop"
    keyed = prepare([{**d, "stack": "s1"} for d in docs])
    assert stack_of(keyed) == "s1"


def test_prepare_refuses_mixed_or_conflicting_stacks():
    with pytest.raises(DocumentError, match="different stacks"):
        prepare([{"name": "a", "image": "x", "stack": "s1"}, {"name": "b", "image": "x", "stack": "s2"}])
    with pytest.raises(DocumentError, match="says stack 's1' but --stack is 's2'"):
        prepare([{"name": "a", "image": "x", "stack": "s1"}], "s2")


def test_prepare_reports_every_problem_with_document_and_field():
    docs = [{"image": "x"}, {"name": "Bad_Name", "image": "x"}, {"name": "c", "image": "x", "replicas": -1, "colour": 1},
            {"name": "d"}, {"name": "e", "image": "x"}, {"name": "e", "image": "x"}]
    with pytest.raises(DocumentError) as e:
        prepare(docs, "s")
    text = str(e.value)
    assert "document 1: needs a 'name' key" in text
    assert "document 2 (Bad_Name): name: must be a DNS label" in text
    assert "document 3 (c): replicas: Input should be greater than or equal to 0" in text
    assert "document 3 (c): colour: unknown field" in text
    assert "document 4 (d): image: Field required" in text
    assert "service 'e' is defined more than once" in text


def test_prepare_accepts_the_get_yaml_export():
    exported = {"name": "web", "stack": "shop", "replicas": 3, "revision": 4, "generation": 7, "version": 7,
                "spec": {"image": "nginx", "env": {"A": "1"}}, "status": {"ready": 3}, "rollout": {"phase": "complete"}}
    [(name, body)] = prepare([exported])
    assert name == "web" and body == {"image": "nginx", "env": {"A": "1"}, "replicas": 3, "stack": "shop"}


def test_flatten_and_diff():
    assert flatten({"a": {"b": 1, "c": {}}, "ports": [{"p": 1}], "cmd": ["x", "y"]}) == {
        "a.b": 1, "a.c": {}, "ports[0].p": 1, "cmd": ["x", "y"]}
    changes = diff({"image": "a", "env": {"X": "1", "Y": "2"}}, {"image": "b", "env": {"X": "1", "Z": "3"}})
    assert changes == [Change("~", "image", "a", "b"), Change("-", "env.Y", "2", None), Change("+", "env.Z", None, "3")]


def _current(body: dict, **over) -> dict:
    """What the server would answer for a service applied with `body`."""
    from orchestrator.cli.plan import desired

    spec, replicas, stack = desired(body)
    return {"name": "web", "spec": spec, "replicas": replicas, "stack": stack, **over}


def test_plan_create_lists_the_given_fields_normalised():
    p = plan_service("web", None, {"image": "nginx", "command": "sleep 10", "resources": {"memory": "64Mi"}})
    assert p.action == "create" and p.new_revision
    fields = {c.field: c.new for c in p.changes}
    assert fields == {"image": "nginx", "replicas": 1, "command": ["sleep", "10"], "resources.memory": 64 * 1024**2}
    assert all(c.op == "+" for c in p.changes)
    assert [c.field for c in p.changes][:2] == ["image", "replicas"]


def test_plan_unchanged_when_same_body():
    body = {"image": "nginx", "replicas": 2, "env": {"A": "1"}}
    p = plan_service("web", _current(body), body)
    assert p.action == "unchanged" and p.changes == []


def test_plan_update_spec_means_a_new_revision():
    body = {"image": "nginx:1", "replicas": 2, "env": {"A": "1"}}
    p = plan_service("web", _current(body), {**body, "image": "nginx:2", "env": {"B": "2"}})
    assert p.action == "update" and p.new_revision
    assert [(c.op, c.field) for c in p.changes] == [("~", "image"), ("-", "env.A"), ("+", "env.B")]


def test_plan_replicas_and_stack_only_are_in_place():
    body = {"image": "nginx", "replicas": 2}
    p = plan_service("web", _current(body), {**body, "replicas": 5, "stack": "shop"})
    assert p.action == "update" and not p.new_revision
    assert p.changes == [Change("~", "replicas", 2, 5), Change("+", "stack", None, "shop")]


def test_render_plan_reads_like_nomad_plan():
    body = {"image": "nginx:1", "replicas": 2}
    plans = [
        plan_service("api", None, {"image": "api:1"}),
        plan_service("web", _current(body), {**body, "image": "nginx:2", "replicas": 3}),
        plan_service("db", _current(body, name="db"), body),
        plan_delete({"name": "old", "stack": "s"}),
    ]
    text = render_plan(plans)
    assert text.splitlines() == [
        "+ service 'api' (create)",
        '    + image:    "api:1"',
        "    + replicas: 1",
        "~ service 'web' (update: new revision, rolling update)",
        '    ~ image:    "nginx:1" => "nginx:2"',
        "    ~ replicas: 2 => 3",
        "= service 'db' (unchanged)",
        "- service 'old' (delete: not in the file, stack pruned)",
        "",
        "Plan: 1 to create, 1 to update, 1 to delete, 1 unchanged.",
    ]


def test_render_plan_nothing_to_do():
    body = {"image": "nginx"}
    assert render_plan([plan_service("web", _current(body), body)]).endswith(
        "Plan: 1 unchanged. Applying would change nothing.")


def test_plan_shows_a_stack_move_only_take_over_allows():
    body = {"image": "nginx", "replicas": 2}
    owned = _current({**body, "stack": "shop"})
    assert plan_service("web", owned, {**body, "stack": "blog"}).changes == [Change("~", "stack", "shop", "blog")]
    assert plan_service("web", owned, body).changes == [Change("-", "stack", "shop", None)]
    assert plan_service("web", owned, {**body, "stack": "shop"}).action == "unchanged"


def test_a_refused_batch_reads_as_service_field_problem():
    from orchestrator.cli.client import ApiError
    from orchestrator.cli.resources import refused

    details = [{"field": "services.1.stack", "path": ["services", 1, "stack"], "service": "web",
                "problem": "service 'web' belongs to stack 'shop'"},
               {"field": "services.2", "path": ["services", 2], "service": None, "problem": "must be an object"},
               {"field": "services.0.env.a.b", "path": ["services", 0, "env", "a.b"], "service": "db", "problem": "bad"}]
    exc = refused(ApiError(409, "conflict", "nothing was applied: ...", details))
    assert exc.detail_lines == ["web: stack: service 'web' belongs to stack 'shop'", "document 3: service: must be an object",
                                "db: env.a.b: bad"]
    assert any("--take-over" in h for h in exc.hints)
    assert not refused(ApiError(422, "validation_error", "m", details[1:])).hints


def test_result_lines():
    from orchestrator.cli.resources import result_line

    svc = {"name": "web", "stack": "shop", "revision": 2, "version": 3}
    assert result_line({"name": "web", "action": "created", "service": svc}, None) == "service/web created"
    assert result_line({"name": "web", "action": "unchanged", "service": svc}, svc) == "service/web unchanged"
    before = {**svc, "revision": 1}
    assert result_line({"name": "web", "action": "updated", "service": svc}, before) == \
        "service/web configured (revision 2, rolling update started)"
    assert result_line({"name": "web", "action": "updated", "service": svc}, svc) == "service/web configured"
    assert result_line({"name": "web", "action": "updated", "service": svc}, {**svc, "stack": None}) == \
        "service/web configured (moved to stack shop)"
    assert result_line({"name": "web", "action": "updated", "service": {**svc, "stack": None}}, before) == \
        "service/web configured (revision 2, rolling update started; moved out of stack shop)"
