"""Packages: a folder (or a .tar.gz of one) that renders into a stack's services, and values.

    mypkg/
      stack.yaml          name, version, description, values (the defaults)
      templates/*.yaml    manifests: YAML documents `name` + the body of PUT /v1/services/{name},
                          rendered by template.py; files starting with `_` are only included
                          by others

A Docker Compose file is a package too: its `${VAR}` are filled from the values (flat keys),
then it is translated as `dockyard compose up` translates it.

Values: the package's defaults, then each `-f` file, then each `--set key.path=value`, merged
in that order (mappings deep, anything else replaced).
"""
from __future__ import annotations

import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from orchestrator.errors import ValidationFailed
from orchestrator.stacks import template

MAX_FILE = 1 << 20  # bytes per file of a package
MAX_FILES = 200
MANIFEST_SUFFIXES = (".yaml", ".yml")


class PackageError(ValidationFailed):
    """A package, values file or --set that cannot be used; the message says which and why."""


@dataclass
class Package:
    name: str
    version: str = ""
    description: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # templates/<name> -> text
    compose: Path | None = None  # a compose file: rendered by the compose translator instead


def _fail(msg: str) -> PackageError:
    return PackageError(msg, [{"field": "package", "problem": msg}])


def load(path: Path) -> Package:
    """A package from a folder, a .tar.gz / .tgz of one, or a compose file."""
    if path.is_dir():
        return _from_files(_read_dir(path), str(path))
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        return _from_files(_read_tar(path), str(path))
    if path.is_file() and path.suffix in MANIFEST_SUFFIXES:
        return Package(name=path.parent.resolve().name if path.stem in ("compose", "docker-compose") else path.stem,
                       compose=path)
    raise _fail(f"{path}: not a package (a folder with stack.yaml, a .tar.gz of one, or a compose file)")


def _read_dir(root: Path) -> dict[str, str]:
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts):
            files[p.relative_to(root).as_posix()] = _text(p.read_bytes(), p.as_posix())
            if len(files) > MAX_FILES:
                raise _fail(f"{root}: more than {MAX_FILES} files")
    return files


def _read_tar(path: Path) -> dict[str, str]:
    """Regular files only, read into memory (nothing is extracted to disk); a single top folder
    (as `tar czf pkg.tgz mypkg/` makes) is taken off the names."""
    files: dict[str, str] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                parts = PurePosixPath(m.name).parts
                if m.name.startswith("/") or ".." in parts:
                    raise _fail(f"{path}: unsafe path {m.name!r} in the archive")
                if m.size > MAX_FILE or len(files) >= MAX_FILES:
                    raise _fail(f"{path}: {m.name} is too big, or the archive has too many files")
                data = tar.extractfile(m)
                files["/".join(p for p in parts if p != ".")] = _text(data.read() if data else b"", m.name)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise _fail(f"{path}: not a readable .tar.gz: {exc}")
    tops = {name.split("/", 1)[0] for name in files}
    if "stack.yaml" not in files and len(tops) == 1 and all("/" in n for n in files):
        top = tops.pop()
        files = {n[len(top) + 1:]: t for n, t in files.items()}
    return files


def _text(data: bytes, where: str) -> str:
    if len(data) > MAX_FILE:
        raise _fail(f"{where}: over {MAX_FILE} bytes")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise _fail(f"{where}: not UTF-8 text")


def _yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _fail(f"{where}: not valid YAML: {str(exc).splitlines()[0]}")


def _from_files(files: dict[str, str], where: str) -> Package:
    if "stack.yaml" not in files:
        raise _fail(f"{where}: no stack.yaml (name, version, description, values)")
    meta = _yaml(files["stack.yaml"], f"{where}/stack.yaml") or {}
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise _fail(f"{where}/stack.yaml: needs a `name`")
    unknown = set(meta) - {"name", "version", "description", "values"}
    if unknown:
        raise _fail(f"{where}/stack.yaml: unknown key(s) {', '.join(sorted(unknown))}")
    values = meta.get("values") or {}
    if not isinstance(values, dict):
        raise _fail(f"{where}/stack.yaml: `values` must be a mapping")
    templates = {n[len("templates/"):]: t for n, t in files.items() if n.startswith("templates/")}
    if not any(_is_manifest(n) for n in templates):
        raise _fail(f"{where}: no manifests in templates/ (*.yaml or *.yml)")
    return Package(name=meta["name"], version=str(meta.get("version") or ""),
                   description=str(meta.get("description") or ""), values=values, files=templates)


def _is_manifest(name: str) -> bool:
    return name.endswith(MANIFEST_SUFFIXES) and not PurePosixPath(name).name.startswith("_")


# ------------------------------------------------------------------------------------ values

def merge(base: Any, over: Any) -> Any:
    """Deep-merge mappings; anything else in `over` replaces."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base.get(k), v)
        return out
    return over


def parse_set(item: str) -> dict[str, Any]:
    """`a.b=value` -> {"a": {"b": value}}; the value is read as YAML (`3` a number, `true` a
    boolean, `[a, b]` a list), as Helm's --set reads it."""
    path, sep, raw = item.partition("=")
    keys = path.split(".")
    if not sep or not all(keys):
        raise _fail(f"--set {item!r}: must look like key=value or key.path=value")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    out: dict[str, Any] = {}
    cur = out
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
    cur[keys[-1]] = value
    return out


def values(pkg: Package, files: list[Path] | None = None, sets: list[str] | None = None,
           base: dict | None = None) -> dict[str, Any]:
    """The values a render uses: `base` (e.g. the release's own, --reuse-values) or the package's
    defaults, then each values file, then each --set."""
    out: dict[str, Any] = merge({}, base if base is not None else pkg.values)
    for f in files or []:
        try:
            loaded = _yaml(Path(f).read_text(), str(f)) or {}
        except OSError as exc:
            raise _fail(f"{f}: {exc.strerror or exc}")
        if not isinstance(loaded, dict):
            raise _fail(f"{f}: a values file must be a mapping")
        out = merge(out, loaded)
    for item in sets or []:
        out = merge(out, parse_set(item))
    return out


# ------------------------------------------------------------------------------------ render

def render(pkg: Package, stack: str, namespace: str, vals: dict[str, Any]) -> tuple[dict[str, str], list[dict], list[str]]:
    """({manifest: rendered text}, the services (each `name` + body), warnings)."""
    if pkg.compose is not None:
        return _render_compose(pkg, stack, vals)
    context = {"values": vals, "stack": {"name": stack, "namespace": namespace},
               "package": {"name": pkg.name, "version": pkg.version}}
    texts = template.render(pkg.files, sorted(n for n in pkg.files if _is_manifest(n)), context)
    services: list[dict] = []
    for name, text in texts.items():
        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as exc:
            raise _fail(f"templates/{name} rendered into invalid YAML: {str(exc).splitlines()[0]}")
        for d in docs:
            if not isinstance(d, dict):
                raise _fail(f"templates/{name}: every document must be a mapping (a service)")
            services.append(d)
    return texts, services, []


def _render_compose(pkg: Package, stack: str, vals: dict[str, Any]) -> tuple[dict[str, str], list[dict], list[str]]:
    from orchestrator.compose import ComposeError, load as load_compose

    nested = [k for k, v in vals.items() if isinstance(v, (dict, list))]
    if nested:
        raise _fail(f"a compose package takes flat values (its ${{VAR}}s): {', '.join(sorted(nested))} "
                    f"{'is' if len(nested) == 1 else 'are'} not")
    env = {k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for k, v in vals.items()}
    assert pkg.compose is not None
    try:
        result = load_compose(pkg.compose, stack=stack, environ=env, env_files=None)
    except ComposeError as exc:
        raise _fail(f"{pkg.compose}: {exc}")
    services = [{"name": n, **{k: v for k, v in body.items() if k != "stack"}} for n, body in result.services.items()]
    warnings = list(result.warnings)
    if any(result.depends_on.values()):
        warnings.append("depends_on: a stack's services are applied together in one transaction; "
                        "their start order is not waited for")
    text = yaml.safe_dump_all(services, sort_keys=False)
    return {pkg.compose.name: text}, services, warnings
