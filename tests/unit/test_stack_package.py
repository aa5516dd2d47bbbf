"""Packages and values (orchestrator/stacks/package.py, template.py): loading a folder or a
.tar.gz, merging values, rendering, and the sandbox: a template sees only what it is given."""
from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.stacks import package
from orchestrator.stacks.template import RenderError, render

META = """name: shop
version: 1.0.0
description: a small shop
values:
  image: busybox:1
  replicas: 2
  env: {LEVEL: info}
"""
WEB = """name: web
image: {{ values.image }}
replicas: {{ values.replicas }}
env: {{ values.env | toyaml }}
{% include "_common.yaml" %}
"""
COMMON = """labels:
  app: {{ stack.name }}-{{ package.version }}
"""


def make(root: Path, **templates: str) -> Path:
    (root / "templates").mkdir(parents=True)
    (root / "stack.yaml").write_text(META)
    for name, text in {"web.yaml": WEB, "_common.yaml": COMMON, **templates}.items():
        (root / "templates" / name).write_text(text)
    return root


def test_a_folder_renders_with_defaults_files_and_sets(tmp_path):
    pkg = package.load(make(tmp_path / "shop"))
    assert (pkg.name, pkg.version, pkg.description) == ("shop", "1.0.0", "a small shop")
    (tmp_path / "prod.yaml").write_text("replicas: 3\nenv: {DEBUG: '0'}\n")
    vals = package.values(pkg, [tmp_path / "prod.yaml"], ["image=busybox:2", "env.LEVEL=warn"])
    assert vals == {"image": "busybox:2", "replicas": 3, "env": {"LEVEL": "warn", "DEBUG": "0"}}
    texts, services, warnings = package.render(pkg, "prod", "default", vals)
    assert list(texts) == ["web.yaml"] and warnings == []
    assert services == [{"name": "web", "image": "busybox:2", "replicas": 3, "env": {"DEBUG": "0", "LEVEL": "warn"},
                         "labels": {"app": "prod-1.0.0"}}]


def test_a_tar_gz_of_the_folder_is_the_same_package(tmp_path):
    make(tmp_path / "shop")
    archive = tmp_path / "shop-1.0.0.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "shop", arcname="shop")
    a, b = package.load(tmp_path / "shop"), package.load(archive)
    assert (a.name, a.values, a.files) == (b.name, b.values, b.files)


def test_an_archive_cannot_climb_out(tmp_path):
    archive = tmp_path / "evil.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        (tmp_path / "x").write_text("x")
        tar.add(tmp_path / "x", arcname="../../etc/x")
    with pytest.raises(package.PackageError, match="unsafe path"):
        package.load(archive)


def test_set_reads_yaml_scalars_and_refuses_nonsense():
    assert package.parse_set("a.b=3") == {"a": {"b": 3}}
    assert package.parse_set("on=true") == {"on": True}
    assert package.parse_set("s=") == {"s": ""}
    for bad in ("novalue", "=3", "a..b=1"):
        with pytest.raises(package.PackageError):
            package.parse_set(bad)


plain = st.recursive(st.one_of(st.integers(), st.text(max_size=3), st.booleans()),
                     lambda kids: st.dictionaries(st.text(min_size=1, max_size=2), kids, max_size=3), max_leaves=6)


@given(a=plain, b=plain)
def test_merge_keeps_what_over_does_not_say_and_over_wins(a, b):
    m = package.merge(a, b)
    if not (isinstance(a, dict) and isinstance(b, dict)):
        assert m == b
        return
    assert set(m) == set(a) | set(b)
    for k in a.keys() - b.keys():
        assert m[k] == a[k]
    for k in b:
        assert m[k] == package.merge(a.get(k), b[k])
    assert package.merge(a, {}) == a and package.merge(m, b) == m  # idempotent


def test_bad_packages_are_explained(tmp_path):
    with pytest.raises(package.PackageError, match="no stack.yaml"):
        (tmp_path / "empty").mkdir()
        package.load(tmp_path / "empty")
    root = make(tmp_path / "p")
    (root / "stack.yaml").write_text("name: p\nchart: 1\n")
    with pytest.raises(package.PackageError, match="unknown key"):
        package.load(root)
    root2 = make(tmp_path / "q", **{"bad.yaml": "{{ values.missing }}"})
    with pytest.raises(RenderError, match="bad.yaml"):
        package.render(package.load(root2), "q", "default", {"image": "x", "replicas": 1, "env": {}})


# ---------------------------------------------------------------- the sandbox

SECRET = "dockyard-test-secret-value"


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",          # Python internals
    "{{ values.__class__.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.environ }}",            # globals Jinja2 gives by default
    "{{ lipsum.__globals__['os'].environ }}",
    "{% include '/etc/hostname' %}",                            # files outside the package
    "{% include '../stack.yaml' %}",
    "{% import '/etc/passwd' as p %}",
    "{{ environ }}", "{{ env.HOME }}", "{{ os }}",             # names it was not given
    "{{ self._TemplateReference__context.environment.loader }}",
    "{{ values.update({'x': 1}) }}",                            # changing its inputs
])
def test_a_template_cannot_read_what_it_was_not_given(source, monkeypatch):
    monkeypatch.setenv("DOCKYARD_TEST_SECRET", SECRET)
    try:
        out = render({"t.yaml": source, "ok.yaml": "a: 1"}, ["t.yaml"], {"values": {"a": 1}})
    except RenderError as exc:
        assert "t.yaml" in exc.message
        return
    text = out["t.yaml"]
    assert SECRET not in text and "root:" not in text and os.environ.get("HOME", "/root") not in text, text


def test_what_it_is_given_it_may_use():
    out = render({"t.yaml": "{% for i in range(2) %}{{ values.n + i }} {% endfor %}{{ stack.name | upper }}"},
                 ["t.yaml"], {"values": {"n": 1}, "stack": {"name": "shop"}})
    assert out == {"t.yaml": "1 2 SHOP"}


def test_a_compose_file_is_a_package_whose_values_fill_its_variables(tmp_path):
    f = tmp_path / "compose.yaml"
    f.write_text("services:\n  web:\n    image: busybox:${TAG:-1}\n    command: sleep 60\n"
                 "    deploy: {replicas: 2}\n")
    pkg = package.load(f)
    _, services, _ = package.render(pkg, "shop", "default", package.values(pkg, sets=["TAG=2"]))
    assert [(s["name"], s["image"], s["replicas"]) for s in services] == [("web", "busybox:2", 2)]
    assert "stack" not in services[0]
    with pytest.raises(package.PackageError, match="flat values"):
        package.render(pkg, "shop", "default", {"a": {"b": 1}})
