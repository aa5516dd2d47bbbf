"""`dockyard get ...` and `dockyard describe ...`: reading the cluster."""
from __future__ import annotations

from typing import Any, Optional

import typer

from orchestrator.cli import render
from orchestrator.cli.client import client, command, complete_nodes, complete_services, fail
from orchestrator.cli.render import Col, Output, OutputOpt, age, fmt_bytes, fmt_labels, fmt_ports, to_yaml

PANEL = "Workloads"

SERVICE_COLS = [
    Col("NAME", lambda s: s["name"]),
    Col("STACK", lambda s: s.get("stack")),
    Col("READY", lambda s: f"{s['status']['ready']}/{s['replicas']}"),
    Col("UP-TO-DATE", lambda s: s["status"]["updated"]),
    Col("REVISION", lambda s: s["revision"]),
    Col("ROLLOUT", lambda s: s["rollout"]["phase"]),
    Col("AGE", lambda s: age(s.get("created_at"))),
    Col("IMAGE", lambda s: s["spec"].get("image"), wide=True),
    Col("PORTS", lambda s: fmt_ports(s["spec"].get("ports")), wide=True),
    Col("URL", lambda s: " ".join(s.get("urls") or []) or None, wide=True),
    Col("MESSAGE", lambda s: s["status"].get("message") or s["rollout"].get("reason"), wide=True),
]


def service_urls(table: dict, name: str) -> list[str]:
    """Where a service answers through the gateways, from GET /v1/routes: its routes' hosts on
    the gateways' port (the port most gateways listen on; none known: the host alone)."""
    ports = [g["listen"].rpartition(":")[2] for g in table.get("gateways") or [] if g.get("listen")]
    port = max(sorted(set(ports)), key=ports.count) if ports else None
    out = []
    ns = client().namespace or "default"
    for r in table.get("routes") or []:
        if r["service"] == name and r.get("namespace", "default") == ns:
            where = r["host"] if port in (None, "80") else f"{r['host']}:{port}"
            out.append(f"http://{where}{r['path_prefix'] if r['path_prefix'] != '/' else '/'}")
    return out


def _health(i: dict) -> str:
    return {True: "healthy", False: "unhealthy"}.get(i.get("healthy"), "-")


INSTANCE_COLS = [
    Col("ID", lambda i: i["id"]),
    Col("SERVICE", lambda i: i["service"]),
    Col("SLOT", lambda i: i["slot"]),
    Col("REVISION", lambda i: i["revision"]),
    Col("NODE", lambda i: i.get("node")),
    Col("STATE", lambda i: i["state"]),
    Col("HEALTH", _health),
    Col("RESTARTS", lambda i: i.get("restart_count", 0)),
    Col("AGE", lambda i: age(i.get("created_at"))),
    Col("DESIRED", lambda i: i.get("desired_state"), wide=True),
    Col("CONTAINER", lambda i: (i.get("container_id") or "")[:12], wide=True),
    Col("PORTS", lambda i: fmt_ports(i.get("host_ports")), wide=True),
    Col("EXIT", lambda i: i.get("exit_code"), wide=True),
    Col("ERROR", lambda i: i.get("last_error"), wide=True),
]

NODE_COLS = [
    Col("NAME", lambda n: n["name"]),
    Col("STATUS", lambda n: n["status"]),
    Col("AVAILABILITY", lambda n: n["availability"]),
    Col("INSTANCES", lambda n: n.get("instances", 0)),
    Col("CPUS", lambda n: n.get("cpus")),
    Col("MEMORY", lambda n: fmt_bytes(n.get("memory"))),
    Col("HEARTBEAT", lambda n: age(n.get("last_heartbeat"))),
    Col("ADDRESS", lambda n: n.get("address"), wide=True),
    Col("LABELS", lambda n: fmt_labels(n.get("labels")), wide=True),
    Col("AGENT", lambda n: n.get("agent_version"), wide=True),
    Col("ENGINE", lambda n: n.get("engine_version"), wide=True),
    Col("AGE", lambda n: age(n.get("created_at")), wide=True),
]


def event_object(e: dict) -> str:
    if e.get("service"):
        return f"service/{e['service']}"
    if e.get("node"):
        return f"node/{e['node']}"
    return "-"


EVENT_COLS = [
    Col("ID", lambda e: e["id"], wide=True),
    Col("AGE", lambda e: age(e.get("time"))),
    Col("KIND", lambda e: e["kind"]),
    Col("OBJECT", event_object),
    Col("MESSAGE", lambda e: e["message"]),
    Col("NODE", lambda e: e.get("node"), wide=True),
    Col("INSTANCE", lambda e: e.get("instance"), wide=True),
    Col("ACTOR", lambda e: e.get("actor"), wide=True),
]

STACK_COLS = [
    Col("NAME", lambda s: s["name"]),
    Col("SERVICES", lambda s: len(s["services"])),
    Col("READY", lambda s: f"{s['ready']}/{s['replicas']}"),
    Col("RELEASE", lambda s: s.get("release")),  # server-side stacks only (docs/releases.md)
    Col("STATE", lambda s: s.get("state")),
    Col("MEMBERS", lambda s: ",".join(s["services"]), wide=True),
    Col("REASON", lambda s: s.get("reason"), wide=True),
]


def with_releases(groups: list[dict], stacks: list[dict]) -> list[dict]:
    """The stacks grouped from services, plus release, state and reason of server-side ones."""
    by = {g["name"]: g for g in groups}
    for st in stacks:
        g = by.setdefault(st["name"], {"name": st["name"], "services": [], "replicas": 0, "ready": 0})
        g.update(release=st["release"], state=st["state"], reason=st["reason"])
    return [by[k] for k in sorted(by)]


def group_stacks(services: list[dict]) -> list[dict]:
    """Stacks from services' `stack` field: name, member services, replicas and ready summed."""
    stacks: dict[str, dict] = {}
    for s in sorted(services, key=lambda s: s["name"]):
        if not s.get("stack"):
            continue
        st = stacks.setdefault(s["stack"], {"name": s["stack"], "services": [], "replicas": 0, "ready": 0})
        st["services"].append(s["name"])
        st["replicas"] += s.get("replicas", 0)
        st["ready"] += (s.get("status") or {}).get("ready", 0)
    return [stacks[k] for k in sorted(stacks)]


get_app = typer.Typer(help="List or show services, instances, nodes, events or stacks.", no_args_is_help=True)


@command
def get_services(name: Optional[str] = typer.Argument(None, help="one service", autocompletion=complete_services),
                 stack: Optional[str] = typer.Option(None, "--stack", help="only the services of this stack"),
                 output: Output = OutputOpt) -> None:
    """List services, or show one.

    Example: dockyard get services

    Example: dockyard get services web -o yaml
    """
    c = client()
    data = c.get(f"/v1/services/{name}") if name else c.get("/v1/services", params={"stack": stack} if stack else None)
    if output == Output.wide:
        table = c.get("/v1/routes")
        for svc in data if isinstance(data, list) else [data]:
            svc["urls"] = service_urls(table, svc["name"])
    render.emit(data, output, SERVICE_COLS, empty="no services")


@command
def get_instances(name: Optional[str] = typer.Argument(None, help="an instance id, or a service name"),
                  service: Optional[str] = typer.Option(None, "--service", "-s", help="only this service's instances"),
                  node: Optional[str] = typer.Option(None, "--node", help="only the instances on this node"),
                  all_: bool = typer.Option(False, "--all", "-a", help="also the stopped ones that are still being removed"),
                  output: Output = OutputOpt) -> None:
    """List instances (the replicas of services), or show one.

    Example: dockyard get instances -s web -o wide

    Example: dockyard get instances web
    """
    c = client()
    if name:
        one = c.get(f"/v1/instances/{name}", ok404=True)
        if one is not None:
            render.emit(one, output, INSTANCE_COLS)
            return
        if c.get(f"/v1/services/{name}", ok404=True) is None:
            raise fail(f"no instance or service named {name!r}")
        service = name
    params: dict[str, Any] = {"all": all_}
    if service:
        params["service"] = service
    if node:
        params["node"] = node
    render.emit(c.get("/v1/instances", params=params), output, INSTANCE_COLS, empty="no instances")


@command
def get_nodes(name: Optional[str] = typer.Argument(None, help="one node", autocompletion=complete_nodes),
              output: Output = OutputOpt) -> None:
    """List nodes, or show one.

    Example: dockyard get nodes -o wide
    """
    c = client()
    render.emit(c.get(f"/v1/nodes/{name}") if name else c.get("/v1/nodes"), output, NODE_COLS, empty="no nodes")


@command
def get_events(service: Optional[str] = typer.Argument(None, help="only this service's events",
                                                        autocompletion=complete_services),
               node: Optional[str] = typer.Option(None, "--node", help="only this node's events"),
               limit: int = typer.Option(50, "--limit", min=1, max=1000, help="how many, newest first"),
               output: Output = OutputOpt) -> None:
    """List recent events, newest first (`dockyard events -w` follows them).

    Example: dockyard get events web --limit 10
    """
    params: dict[str, Any] = {"limit": limit}
    if service:
        params["service"] = service
    if node:
        params["node"] = node
    render.emit(client().get("/v1/events", params=params), output, EVENT_COLS, empty="no events")


@command
def get_stacks(name: Optional[str] = typer.Argument(None, help="one stack"), output: Output = OutputOpt) -> None:
    """List stacks: services applied together (apply of several documents, compose up, stack install),
    with the release and state of those installed as server-side stacks.

    Example: dockyard get stacks

    Example: dockyard get stacks shop -o json
    """
    from orchestrator.cli.stack_cmd import path

    c = client()
    stacks = group_stacks(c.get("/v1/services", params={"stack": name} if name else None))
    server = c.get(path()) or []
    stacks = with_releases(stacks, [s for s in server if name in (None, s["name"])])
    if name:
        if not stacks:
            raise fail(f"stack {name!r} not found: no service belongs to it")
        render.emit(stacks[0], output, STACK_COLS)
        return
    render.emit(stacks, output, STACK_COLS, empty="no stacks")


# ------------------------------------------------------------------- describe

describe_app = typer.Typer(help="Show a service or a node in detail, with its instances and recent events.",
                           no_args_is_help=True)


def _section(title: str, body: str) -> str:
    return f"{title}:\n" + "\n".join("  " + line if line else line for line in body.rstrip().splitlines())


def describe_service_text(svc: dict, instances: list[dict], events: list[dict], urls: list[str] | None = None,
                          space: dict | None = None) -> str:
    st, ro = svc["status"], svc["rollout"]
    head = [
        ("Name", svc["name"]), ("Namespace", svc.get("namespace") or "default"), ("Stack", svc.get("stack") or "-"),
        ("Revision", f"{svc['revision']} (generation {svc['generation']}, version {svc['version']})"),
        ("Replicas", f"{svc['replicas']} desired | {st['updated']} updated | {st['ready']} ready | "
                     f"{st['running']} running | {st['pending']} pending"),
        ("Rollout", ro["phase"] + (f" ({ro['reason']})" if ro.get("reason") else "")),
        ("Message", st.get("message") or "-"),
        ("URL", " ".join(urls or []) or "-"),
        ("Created", f"{svc.get('created_at')} ({age(svc.get('created_at'))} ago)"),
        ("Updated", f"{svc.get('updated_at')} ({age(svc.get('updated_at'))} ago)"),
    ]
    if space and space.get("parent"):
        # a space: where its requests fall back, and what they find there
        head.insert(2, ("Space", f"falls back {' → '.join(space['chain'])}"))
        inherited = ", ".join(f"{i['name']} (from {i['from']})" for i in space.get("inherited") or [])
        head.insert(3, ("Inherited", inherited or "-"))
    width = max(len(k) for k, _ in head) + 2
    parts = ["\n".join(f"{k + ':':<{width}}{v}" for k, v in head)]
    parts.append(_section("Spec", to_yaml(svc["spec"])))
    parts.append(_section("Instances", _plain_table(instances, INSTANCE_COLS) or "none"))
    parts.append(_section("Events (newest first)", _plain_table(events, EVENT_COLS) or "none"))
    return "\n\n".join(parts)


def _plain_table(items: list[dict], cols: list[Col]) -> str:
    if not items:
        return ""
    headers, body = render.rows(items, cols, wide=False)
    return render.render_table(headers, body)


@describe_app.command("service")
@command
def describe_service(name: str = typer.Argument(..., help="service name", autocompletion=complete_services),
                     events: int = typer.Option(10, "--events", min=0, max=1000, help="how many recent events"),
                     output: Optional[Output] = typer.Option(None, "--output", "-o", help="json or yaml instead of text")) -> None:
    """Show a service: spec, status, rollout, instances and recent events.

    Example: dockyard describe service web
    """
    c = client()
    svc = c.get(f"/v1/services/{name}")
    inst = c.get(f"/v1/services/{name}/instances")
    evs = c.get("/v1/events", params={"service": name, "limit": events}) if events else []
    urls = service_urls(c.get("/v1/routes"), name) if svc["spec"].get("expose") else []
    space = c.get(f"/v1/namespaces/{c.namespace}") if c.namespace else None
    if output in (Output.json, Output.yaml):
        render.emit({"service": svc, "instances": inst, "events": evs, "urls": urls, "space": space}, output)
        return
    typer.echo(describe_service_text(svc, inst, evs, urls, space))


@describe_app.command("node")
@command
def describe_node(name: str = typer.Argument(..., help="node name", autocompletion=complete_nodes),
                  events: int = typer.Option(10, "--events", min=0, max=1000, help="how many recent events"),
                  output: Optional[Output] = typer.Option(None, "--output", "-o", help="json or yaml instead of text")) -> None:
    """Show a node: capacity, state, the instances on it and recent events.

    Example: dockyard describe node worker-1
    """
    c = client()
    node = c.get(f"/v1/nodes/{name}")
    inst = c.get("/v1/instances", params={"node": name})
    evs = c.get("/v1/events", params={"node": name, "limit": events}) if events else []
    if output in (Output.json, Output.yaml):
        render.emit({"node": node, "instances": inst, "events": evs}, output)
        return
    head = [(k.replace("_", " ").capitalize().replace("Cpus", "CPUs"), node.get(k)) for k in
            ("name", "status", "availability", "address", "cpus", "instances", "agent_version", "engine_version",
             "last_heartbeat", "created_at")]
    head.insert(5, ("Memory", fmt_bytes(node.get("memory"))))
    head.insert(4, ("Labels", fmt_labels(node.get("labels"))))
    width = max(len(k) for k, _ in head) + 2
    typer.echo("\n\n".join([
        "\n".join(f"{k + ':':<{width}}{render.text(v)}" for k, v in head),
        _section("Instances", _plain_table(inst, INSTANCE_COLS) or "none"),
        _section("Events (newest first)", _plain_table(evs, EVENT_COLS) or "none"),
    ]))


def register(app: typer.Typer) -> None:
    for fn, names in ((get_services, ("services", "service", "svc")), (get_instances, ("instances", "instance", "inst")),
                      (get_nodes, ("nodes", "node")), (get_events, ("events", "event", "ev")),
                      (get_stacks, ("stacks", "stack"))):
        for i, n in enumerate(names):
            get_app.command(n, hidden=i > 0)(fn)
    describe_app.command("svc", hidden=True)(describe_service)
    from orchestrator.cli import spaces

    spaces.register(app, get_app)
    app.add_typer(get_app, name="get", rich_help_panel=PANEL)
    app.add_typer(describe_app, name="describe", rich_help_panel=PANEL)
