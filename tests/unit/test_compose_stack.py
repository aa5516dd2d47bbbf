"""Compose as a stack: the corpus of public-style files, interpolation, depends_on, networks,
the keys that are honoured or refused, and readiness between dependency levels."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.compose import ComposeError, interpolate, load, translate
from orchestrator.compose.depends import levels
from orchestrator.compose.readiness import check
from tests.unit.test_compose import NO_DNS
from orchestrator.spec import ServiceApply

CORPUS = Path(__file__).resolve().parents[1] / "data" / "compose"
PROJECTS = sorted(d.name for d in CORPUS.iterdir() if d.is_dir())


def compose_file(project: str) -> Path:
    (f,) = [p for p in (CORPUS / project).iterdir() if p.suffix in (".yml", ".yaml")]
    return f


def one(service: dict, **kw) -> tuple[dict, list[str]]:
    t = translate({"services": {"app": service}}, stack="s", **kw)
    return t.services["app"], t.warnings


# ---------------------------------------------------------------- the corpus

# project -> None (translates) or the refusal, which names the service and the key
EXPECTED = {
    "elastic": None,
    "flask-redis": r"^web\.build: Dockyard does not build images: build it on a node",
    "gitea": None,
    "gluetun-qbittorrent": r"^gluetun\.environment\[0\]: required variable VPN_SERVICE_PROVIDER is missing a "
                           r"value: set the VPN provider in \.env$",
    "nginx-proxy": None,
    "pihole-unbound": r"^pihole\.networks\.dns_net\.ipv4_address: fixed container addresses are not supported",
    "postgres-adminer": None,
    "prometheus-grafana": r"^prometheus\.volumes\[1\]: named volume 'prometheus_data' .*--volume-root DIR",
    "rq-worker": r"^redis\.volumes\[0\]: named volume 'redis-data' .*--volume-root DIR",
    "traefik": None,
    "wordpress": r"^db\.volumes\[0\]: named volume 'db_data' .*--volume-root DIR",
}
# with a volume root (and the variables a user would set), what still cannot run is refused
WITH_ROOT = {**{k: None for k in EXPECTED}, "flask-redis": EXPECTED["flask-redis"],
             "pihole-unbound": EXPECTED["pihole-unbound"],
             "gluetun-qbittorrent": r"^qbittorrent\.network_mode: 'service:gluetun' shares another container's "
                                    r"network namespace"}
SET = {"VPN_SERVICE_PROVIDER": "mullvad", "WIREGUARD_PRIVATE_KEY": "k"}


def test_the_corpus_is_the_one_described():
    assert sorted(EXPECTED) == PROJECTS and len(PROJECTS) >= 9
    readme = (CORPUS / "README.md").read_text()
    assert all(f"| {p} " in readme for p in PROJECTS)


@pytest.mark.parametrize("project", PROJECTS)
def test_each_file_translates_or_is_refused_naming_service_and_key(project):
    path = compose_file(project)
    for root, env, expected in ((None, {}, EXPECTED[project]), ("/srv/dockyard", SET, WITH_ROOT[project])):
        if expected is None:
            t = load(path, environ=env, volume_root=root)
            assert t.services and [n for level in t.levels for n in level] == sorted(
                t.services, key=[n for level in t.levels for n in level].index)
            for body in t.services.values():
                ServiceApply.model_validate(body)
        else:
            with pytest.raises(ComposeError, match=expected):
                load(path, environ=env, volume_root=root)


def test_wordpress():
    t = load(compose_file("wordpress"), volume_root="/srv/dockyard")
    assert t.levels == [["db", "wordpress"]]
    assert t.services["db"]["command"] == ["--default-authentication-plugin=mysql_native_password"]
    assert t.services["db"]["volumes"] == [{"source": "/srv/dockyard/wordpress/db_data", "target": "/var/lib/mysql",
                                            "read_only": False}]
    assert t.services["db"]["restart"] == {"policy": "always"}
    assert "ports" not in t.services["db"]  # expose publishes nothing, as in Docker
    assert t.services["wordpress"]["ports"] == [{"container_port": 80, "host_port": 80, "protocol": "tcp"}]
    assert t.services["wordpress"]["env"]["WORDPRESS_DB_HOST"] == "db"


def test_elastic_reads_its_env_file_and_keeps_dotted_names():
    t = load(compose_file("elastic"), environ={"ES_PORT": "19200"})  # the environment wins over .env
    es, kibana = t.services["es01"], t.services["kibana"]
    assert es["image"] == kibana["image"].replace("kibana/kibana", "elasticsearch/elasticsearch")
    assert es["image"].endswith(":8.13.4")
    assert es["env"]["discovery.type"] == "single-node" and es["env"]["cluster.name"] == "docker-cluster"
    assert es["env"]["ES_JAVA_OPTS"] == "-Xms512m -Xmx512m"
    assert es["ports"] == [{"container_port": 9200, "host_port": 19200, "protocol": "tcp"}]
    assert kibana["ports"] == [{"container_port": 5601, "host_port": 5601, "protocol": "tcp"}]
    assert es["resources"] == {"memory": 1073741824}  # mem_limit: ${MEM_LIMIT}
    assert es["health"]["retries"] == 120
    assert t.depends_on == {"es01": {}, "kibana": {"es01": "service_healthy"}}
    assert t.levels == [["es01"], ["kibana"]]
    assert "es01: 'ulimits' is not supported and was not applied" in t.warnings


def test_prometheus_grafana():
    t = load(compose_file("prometheus-grafana"), environ={"ADMIN_PASSWORD": "s3cret"}, volume_root="/data")
    assert t.services["grafana"]["env"] == {"GF_SECURITY_ADMIN_USER": "admin", "GF_SECURITY_ADMIN_PASSWORD": "s3cret",
                                            "GF_USERS_ALLOW_SIGN_UP": "false"}
    assert t.services["nodeexporter"]["command"][-1] == (
        "--collector.filesystem.mount-points-exclude=^/(sys|proc|dev|host|etc)($|/)")  # '$$' is '$'
    assert t.levels == [["prometheus", "nodeexporter"], ["grafana"]]
    assert "prometheus.container_name: not applied; Dockyard names the containers dy-prometheus-<slot>-<id> " \
           "(several replicas cannot share one name)" in t.warnings
    assert "networks: not separate; every container runs on its node's default bridge network" in t.warnings


def test_rq_worker_interpolates_replicas_and_orders_three_levels():
    t = load(compose_file("rq-worker"), environ={"WORKERS": "4", "TAG": "v2"}, volume_root="/srv")
    assert t.services["worker"]["replicas"] == 4
    assert t.services["worker"]["image"] == "ghcr.io/example/jobs-worker:v2"
    assert t.services["worker"]["env"] == {"REDIS_URL": "redis://redis:6379/0", "LOG_LEVEL": "info"}
    assert t.services["worker"]["resources"] == {"cpus": 0.5, "memory": 256 * 2**20}
    assert t.services["redis"]["resources"] == {"memory": 512 * 2**20}  # mem_limit: 512m is MiB, as in Docker
    assert t.levels == [["redis"], ["worker"], ["dashboard"]]
    assert t.depends_on["dashboard"] == {"redis": "service_started", "worker": "service_started"}
    assert {b["stack"] for b in t.services.values()} == {"jobs"}
    assert load(compose_file("rq-worker"), environ={"LOG_LEVEL": ""}, volume_root="/srv").services[
        "worker"]["env"]["LOG_LEVEL"] == ""  # ${LOG_LEVEL-info}: set but empty stays empty


def test_gitea_and_postgres_adminer():
    t = load(compose_file("gitea"))
    assert t.services["server"]["env"]["GITEA__database__HOST"] == "db:5432"
    assert t.levels == [["db"], ["server"]]
    assert {b["stack"] for b in t.services.values()} == {"gitea"}  # the directory, as Compose's project name
    t = load(compose_file("postgres-adminer"))
    assert t.services["db"]["env"] == {"POSTGRES_PASSWORD": "example"}
    assert "db: 'shm_size' is not supported and was not applied" in t.warnings


# ---------------------------------------------------------------- interpolation

ENV = {"TAG": "1.2", "EMPTY": "", "HOST": "db"}


@pytest.mark.parametrize("text, out", [
    ("plain", "plain"), ("$TAG", "1.2"), ("${TAG}", "1.2"), ("v${TAG}-x", "v1.2-x"), ("$TAG.$HOST", "1.2.db"),
    ("${MISSING:-dflt}", "dflt"), ("${EMPTY:-dflt}", "dflt"), ("${MISSING-dflt}", "dflt"), ("${EMPTY-dflt}", ""),
    ("${TAG:-dflt}", "1.2"), ("${TAG:+alt}", "alt"), ("${EMPTY:+alt}", ""), ("${EMPTY+alt}", "alt"),
    ("${MISSING+alt}", ""), ("${MISSING:-${HOST}:5432}", "db:5432"), ("${MISSING:-a${MISSING2:-b}c}", "abc"),
    ("$$", "$"), ("$$TAG", "$TAG"), ("$${TAG}", "${TAG}"), ("cost $$5", "cost $5"), ("${TAG?}", "1.2"),
    ("${MISSING:-}", ""), ("${MISSING:-a b:c}", "a b:c"),
])
def test_interpolation_forms(text, out):
    assert interpolate({"k": text}, ENV, lambda _: None) == {"k": out}


@pytest.mark.parametrize("text, message", [
    ("${MISSING:?need it}", r"^x: required variable MISSING is missing a value: need it$"),
    ("${EMPTY:?need it}", r"required variable EMPTY is missing a value: need it"),
    ("${MISSING?}", r"required variable MISSING is missing a value: is not set"),
    ("${MISSING:?${HOST} is down}", r"missing a value: db is down"),
    ("${}", r"a variable name is needed"), ("${TAG", r"without a closing"), ("$1", r"must be followed by a name"),
    ("cost $", r"must be followed"), ("${TAG:x}", r"use \$\{NAME\}"), ("${1A}", r"a variable name is needed"),
])
def test_interpolation_errors(text, message):
    with pytest.raises(ComposeError, match=message):
        interpolate({"x": text}, ENV, lambda _: None)
    assert "(a literal '$' is written '$$')" in str(pytest.raises(ComposeError, interpolate, {"x": "$1"}, {}, print).value)


def test_unset_variables_warn_once_and_keys_are_not_interpolated():
    warnings: list[str] = []
    out = interpolate({"$KEY": ["$A", "${A}", 5, None, True], "b": {"c": "$B"}}, {}, warnings.append)
    assert out == {"$KEY": ["", "", 5, None, True], "b": {"c": ""}}
    assert warnings == ["the variable A is not set; it was replaced by an empty string",
                        "the variable B is not set; it was replaced by an empty string"]


@given(st.text(alphabet=st.characters(blacklist_characters="$"), max_size=30))
def test_text_without_a_dollar_is_unchanged(text):
    assert interpolate([text], {}, lambda _: None) == [text]


@given(st.text(max_size=30))
def test_doubled_dollars_round_trip(text):
    """'$$' is the escape: any text with each '$' doubled comes back as itself."""
    assert interpolate(text.replace("$", "$$"), {}, lambda _: None) == text


@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), st.text(max_size=20), st.text(max_size=20))
def test_a_set_variable_beats_its_default(name, value, default):
    default = default.replace("$", "$$").replace("}", "")
    assert interpolate(f"${{{name}:-{default}}}", {name: value}, print) == (value or default.replace("$$", "$"))
    assert interpolate(f"${{{name}-{default}}}", {name: value}, print) == value


def test_interpolation_happens_before_translation_and_reaches_every_key():
    compose = {"name": "${STACK:-shop}", "services": {"web": {
        "image": "nginx:${TAG:-1.27}", "ports": ["${PORT:-8080}:80"], "deploy": {"replicas": "${N:-3}"},
        "init": "${INIT:-true}", "mem_limit": "${MEM:-128m}", "healthcheck": {"test": "curl -f $$HOST/"}}}}
    t = translate(compose, stack="shop", environ={"PORT": "9000"})
    web = t.services["web"]
    assert web["image"] == "nginx:1.27" and web["replicas"] == 3 and web["init"] is True
    assert web["ports"] == [{"container_port": 80, "host_port": 9000, "protocol": "tcp"}]
    assert web["resources"] == {"memory": 128 * 2**20}
    assert web["health"]["command"] == ["/bin/sh", "-c", "curl -f $HOST/"]


def test_dotenv_beside_the_file_and_explicit_env_files(tmp_path):
    (tmp_path / ".env").write_text("TAG=from-dotenv\nPORT=81\n")
    (tmp_path / "other.env").write_text("TAG=from-other\n")
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web:\n    image: nginx:${TAG}\n    ports: ['${PORT:-80}:80']\n")
    assert load(tmp_path / "compose.yaml").services["web"]["image"] == "nginx:from-dotenv"
    assert load(tmp_path / "compose.yaml", environ={"TAG": "env"}).services["web"]["image"] == "nginx:env"
    t = load(tmp_path / "compose.yaml", env_files=[tmp_path / "other.env"])
    assert t.services["web"]["image"] == "nginx:from-other"
    assert t.services["web"]["ports"][0]["host_port"] == 80  # other.env replaces .env, as --env-file does
    assert "the variable PORT" not in " ".join(t.warnings)
    with pytest.raises(ComposeError, match="cannot read"):
        load(tmp_path / "compose.yaml", env_files=[tmp_path / "absent.env"])
    # the stack name may come from a variable too
    (tmp_path / "compose.yaml").write_text("name: ${PROJECT:-fallback}\nservices:\n  web:\n    image: x\n")
    assert load(tmp_path / "compose.yaml", environ={"PROJECT": "Shop"}).services["web"]["stack"] == "shop"


# ---------------------------------------------------------------- depends_on

def stack(**services) -> dict:
    return {"services": {name: {"image": "x", **svc} for name, svc in services.items()}}


def test_depends_on_list_map_links_and_levels():
    t = translate(stack(
        web={"depends_on": {"db": {"condition": "service_healthy"}, "cache": {"condition": "service_started"}}},
        worker={"depends_on": ["db"], "links": ["cache:redis"]},
        db={}, cache={},
        migrate={"depends_on": {"db": {"condition": "service_healthy", "restart": True}}, "restart": "no"},
        api={"depends_on": {"migrate": {"condition": "service_completed_successfully"}, "ghost": {"required": False}}},
    ), stack="s")
    assert t.depends_on == {
        "web": {"db": "service_healthy", "cache": "service_started"},
        "worker": {"db": "service_started", "cache": "service_started"},
        "db": {}, "cache": {},
        "migrate": {"db": "service_healthy"},
        "api": {"migrate": "service_completed_successfully"},
    }
    assert t.levels == [["db", "cache"], ["web", "worker", "migrate"], ["api"]]
    assert "migrate.depends_on.db.restart: dependents are not restarted when 'db' changes" in t.warnings


def test_depends_on_follows_renamed_services():
    t = translate(stack(web_app={"depends_on": ["my_db"]}, my_db={}), stack="s")
    assert t.depends_on == {"web-app": {"my-db": "service_started"}, "my-db": {}}


@pytest.mark.parametrize("services, message", [
    ({"a": {"depends_on": ["b"]}, "b": {"depends_on": ["c"]}, "c": {"depends_on": ["a"]}},
     r"^depends_on has a cycle: a -> b -> c -> a$"),
    ({"a": {"depends_on": ["a"]}}, r"a.depends_on: a service cannot depend on itself"),
    ({"a": {"depends_on": ["nope"]}}, r"a.depends_on: 'nope' is not a service of this file"),
    ({"a": {"links": ["nope:alias"]}}, r"a.links: 'nope' is not a service of this file"),
    ({"a": {"depends_on": {"b": {"condition": "service_ready"}}}, "b": {}},
     r"a.depends_on.b.condition: must be one of service_started, service_healthy, service_completed_successfully"),
    ({"a": {"depends_on": "b"}, "b": {}}, r"a.depends_on: must be a list of service names or a mapping"),
    ({"a": {"depends_on": {"b": "yes"}}, "b": {}}, r"a.depends_on: invalid entry 'b'"),
    ({"a": {"depends_on": {"b": {"condition": "service_completed_successfully"}}}, "b": {}},
     r"a.depends_on.b.condition: 'b' would never complete: it restarts always; give 'b' restart: 'no'"),
])
def test_bad_depends_on(services, message):
    with pytest.raises(ComposeError, match=message):
        translate(stack(**services), stack="s")


@given(st.dictionaries(st.sampled_from("abcdefgh"), st.sets(st.sampled_from("abcdefgh")), min_size=1))
def test_levels_put_every_service_after_what_it_depends_on(graph):
    deps = {s: {d: "service_started" for d in ds if d in graph} for s, ds in graph.items()}
    try:
        out = levels(deps)
    except ComposeError as exc:
        cycle = re.search(r"a cycle: (.*)$", str(exc)).group(1).split(" -> ")  # type: ignore[union-attr]
        assert cycle[0] == cycle[-1] and all(b in deps[a] for a, b in zip(cycle, cycle[1:]))
        return
    where = {s: i for i, level in enumerate(out) for s in level}
    assert sorted(where) == sorted(deps)
    assert all(where[d] < where[s] for s in deps for d in deps[s])


# ---------------------------------------------------------------- networks and the other keys

def test_plain_networks_are_accepted_with_a_warning():
    t = translate({"services": {"a": {"image": "x", "networks": {"front": {"aliases": ["api"]}, "back": None}},
                                "b": {"image": "x", "networks": ["back", "default"]}},
                   "networks": {"front": {"driver": "bridge", "external": False}, "back": {"driver": "overlay",
                                                                                          "attachable": True}}},
                  stack="s")
    assert "networks" not in t.services["a"]
    assert t.warnings == [
        "networks.back.attachable was not applied: containers run on the node's default bridge network",
        "a.networks.front.aliases: not applied; containers cannot look each other up by name or alias yet",
        "networks: not separate; every container runs on its node's default bridge network",
        f"services: containers cannot look each other up by service name (a, b): {NO_DNS}",
    ]


@pytest.mark.parametrize("compose, message", [
    ({"networks": {"web": {"external": True}}}, r"^networks.web.external: an external network is an existing Docker"),
    ({"networks": {"web": {"internal": True}}}, r"^networks.web.internal: Dockyard cannot cut a network off"),
    ({"networks": {"lan": {"driver": "macvlan"}}}, r"^networks.lan.driver: driver 'macvlan' is not supported"),
    ({"networks": []}, r"top-level 'networks' must be a mapping"),
    ({"services": {"app": {"image": "x", "networks": ["nope"]}}},
     r"^app.networks: network 'nope' is not defined under the top-level 'networks'"),
    ({"services": {"app": {"image": "x", "networks": {"n": {"ipv6_address": "fd00::2"}}}}, "networks": {"n": {}}},
     r"^app.networks.n.ipv6_address: fixed container addresses are not supported"),
    ({"services": {"app": {"image": "x", "networks": "n"}}}, r"app.networks: must be a list"),
])
def test_networks_that_would_break_or_expose_a_stack_are_refused(compose, message):
    compose = {"services": {"app": {"image": "x"}}, **compose}
    with pytest.raises(ComposeError, match=message):
        translate(compose, stack="s")


@pytest.mark.parametrize("signal", ["SIGTERM", "TERM", "sigterm", 15])
def test_stop_signal_sigterm_is_what_dockyard_sends(signal):
    assert one({"image": "x", "stop_signal": signal}) == ({"image": "x", "replicas": 1, "stack": "s"}, [])


@pytest.mark.parametrize("signal", ["SIGQUIT", "SIGINT", 2, "SIGKILL", True])
def test_other_stop_signals_are_refused(signal):
    with pytest.raises(ComposeError, match=r"^app.stop_signal: .* is not supported: Dockyard stops a container "
                                           r"with its image's STOPSIGNAL, else SIGTERM"):
        one({"image": "x", "stop_signal": signal})


def test_expose_is_checked_and_publishes_nothing():
    assert one({"image": "x", "expose": [3306, "33060", "8000-8010", "53/udp"]}) == (
        {"image": "x", "replicas": 1, "stack": "s"}, [])
    for bad in (["http"], "3306", [True]):
        with pytest.raises(ComposeError, match=r"^app.expose: "):
            one({"image": "x", "expose": bad})


def test_container_name_is_warned():
    body, warnings = one({"image": "x", "container_name": "my-app"})
    assert body == {"image": "x", "replicas": 1, "stack": "s"}
    assert warnings == ["app.container_name: not applied; Dockyard names the containers dy-app-<slot>-<id> "
                        "(several replicas cannot share one name)"]


def test_secrets_and_configs_from_files_are_read_only_binds(tmp_path):
    compose = {"services": {"app": {"image": "x", "secrets": ["pw", {"source": "key", "target": "api.key", "mode": 0o400}],
                                    "configs": [{"source": "conf", "target": "/etc/app.conf"}, "plain"]}},
               "secrets": {"pw": {"file": "./pw.txt"}, "key": {"file": "/etc/keys/api"}},
               "configs": {"conf": {"file": "app.conf"}, "plain": {"file": "plain.txt"}}}
    t = translate(compose, stack="s", base_dir=tmp_path)
    assert t.services["app"]["volumes"] == [
        {"source": str(tmp_path / "pw.txt"), "target": "/run/secrets/pw", "read_only": True},
        {"source": "/etc/keys/api", "target": "/run/secrets/api.key", "read_only": True},
        {"source": str(tmp_path / "app.conf"), "target": "/etc/app.conf", "read_only": True},
        {"source": str(tmp_path / "plain.txt"), "target": "/plain", "read_only": True},
    ]
    assert t.warnings == ["app.secrets: 'mode' of 'key' was not applied; the file keeps its owner and mode on the node"]


@pytest.mark.parametrize("compose, message", [
    ({"secrets": {"pw": {"external": True}}}, r"^secrets.pw: 'external' is not supported: Dockyard mounts secrets "
                                              r"from files only"),
    ({"secrets": {"pw": {"environment": "PW"}}}, r"^secrets.pw: 'environment' is not supported"),
    ({"configs": {"c": {"content": "x"}}}, r"^configs.c: 'content' is not supported"),
    ({"services": {"app": {"image": "x", "secrets": ["nope"]}}}, r"^app.secrets: 'nope' is not defined"),
])
def test_secrets_that_are_not_files_are_refused(compose, message):
    with pytest.raises(ComposeError, match=message):
        translate({"services": {"app": {"image": "x"}}, **compose}, stack="s")


# ---------------------------------------------------------------- readiness between levels

def svc(replicas=2, running=0, ready=0, updated=None, phase="complete", message="", revision=1, policy="always"):
    return {"name": "db", "replicas": replicas, "revision": revision, "spec": {"restart": {"policy": policy}},
            "status": {"running": running, "ready": ready, "updated": replicas if updated is None else updated,
                       "message": message}, "rollout": {"phase": phase, "reason": ""}}


def test_started_and_healthy():
    assert check("service_started", svc(running=1, message="waiting for 1 of 2"))[0] == "waiting"
    assert check("service_started", svc(running=2)) == ("ready", "2/2 running")
    assert check("service_healthy", svc(running=2, ready=1)) == ("waiting", "1/2 ready")
    assert check("service_healthy", svc(running=2, ready=2)) == ("ready", "2/2 ready")
    # old replicas do not count: the update itself is awaited
    assert check("service_healthy", svc(running=3, ready=2, updated=1, phase="progressing"))[0] == "waiting"
    assert check("service_healthy", svc(ready=2, phase="progressing"))[0] == "waiting"
    assert check("service_started", svc(replicas=0)) == ("ready", "0/0 running")
    assert check("service_healthy", svc(ready=1, phase="rolled_back"))[0] == "failed"


def test_completed_successfully():
    one_shot = svc(replicas=1, revision=2, policy="never")
    exited = lambda code, rev=2: {"slot": 1, "revision": rev, "state": "exited", "exit_code": code}  # noqa: E731
    assert check("service_completed_successfully", one_shot, [])[0] == "waiting"
    assert check("service_completed_successfully", one_shot, [exited(0, rev=1)])[0] == "waiting"
    assert check("service_completed_successfully", one_shot, [exited(0)]) == ("ready", "1/1 completed")
    assert check("service_completed_successfully", one_shot, [exited(3)]) == (
        "failed", "instance db.1 exited with code 3")
    # on-failure restarts it: keep waiting
    assert check("service_completed_successfully", svc(replicas=1, revision=2, policy="on-failure"), [exited(3)])[0] \
        == "waiting"


# ---------------------------------------------------------------- profiles

PROFILED = stack(web={}, debug={"profiles": ["debug"]}, tools={"profiles": ["ops", "debug"], "depends_on": ["web"]})


def test_services_in_profiles_are_left_out_unless_enabled():
    t = translate(PROFILED, stack="s")
    assert list(t.services) == ["web"] and t.levels == [["web"]]
    assert "debug: not applied; it is in profile(s) debug, which --profile did not enable" in t.warnings
    assert list(translate(PROFILED, stack="s", profiles=["ops"]).services) == ["web", "tools"]
    assert list(translate(PROFILED, stack="s", profiles=["debug"]).services) == ["web", "debug", "tools"]
    assert list(translate(PROFILED, stack="s", profiles=["*"]).services) == ["web", "debug", "tools"]


def test_profiles_from_compose_profiles_and_dependencies_on_disabled_ones(tmp_path):
    f = tmp_path / "compose.yaml"
    f.write_text("services:\n  web:\n    image: x\n  debug:\n    image: x\n    profiles: [debug]\n")
    assert list(load(f, environ={"COMPOSE_PROFILES": "debug,other"}).services) == ["web", "debug"]
    assert list(load(f, environ={"COMPOSE_PROFILES": "debug"}, profiles=[]).services) == ["web"]
    with pytest.raises(ComposeError, match=r"^web.depends_on: 'debug' is in profile\(s\) debug, which is not "
                                           r"enabled: pass --profile debug$"):
        translate(stack(web={"depends_on": ["debug"]}, debug={"profiles": ["debug"]}), stack="s")
    with pytest.raises(ComposeError, match="no service is enabled"):
        translate(stack(debug={"profiles": ["debug"]}), stack="s")
    with pytest.raises(ComposeError, match=r"debug.profiles: must be a list"):
        translate(stack(debug={"profiles": "debug"}), stack="s")


@pytest.mark.parametrize("replicas", ["²", "9" * 5000, "-1", "1.5"])
def test_odd_interpolated_numbers_are_refused_cleanly(replicas):
    with pytest.raises(ComposeError, match=r"app.deploy.replicas: must be a non-negative integer"):
        translate({"services": {"app": {"image": "x", "deploy": {"replicas": "${N}"}}}}, stack="s", environ={"N": replicas})


# ---------------------------------------------------------------- any input: a translation or a ComposeError

SERVICE_KEYS = ["image", "build", "command", "entrypoint", "environment", "env_file", "ports", "deploy", "scale",
                "healthcheck", "labels", "restart", "stop_grace_period", "init", "pull_policy", "cpus", "mem_limit",
                "mem_reservation", "memswap_limit", "depends_on", "links", "expose", "container_name", "stop_signal",
                "networks", "secrets", "configs", "profiles", "privileged", "cap_add", "network_mode", "pid",
                "volumes", "user"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["${X}", "$$", "${X:?e}", "a:b", "80:80/udp", "1g", "db",
                                                           "service_healthy", "/a:/b:ro", "SIGTERM", "x:1"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["condition", "target", "source", "type", "limits", "memory", "cpus", "test", "file", "db",
                     "replicas", "resources", "external", "driver", "ipv4_address", "x", "published"]), inner,
    max_size=3), max_leaves=8)


@given(st.dictionaries(st.sampled_from(["db", "web", "a_b"]),
                       st.dictionaries(st.sampled_from(SERVICE_KEYS), values, max_size=5), min_size=1, max_size=3),
       st.dictionaries(st.sampled_from(["networks", "volumes", "secrets", "configs", "name"]), values, max_size=2))
def test_any_input_translates_or_is_a_compose_error(services, top):
    for svc in services.values():
        svc.setdefault("image", "x")
    try:
        t = translate({"services": services, **top}, stack="s", environ={"X": "1"}, volume_root="/v")
    except ComposeError:
        return
    for body in t.services.values():
        ServiceApply.model_validate(body)
