"""The CLI's config file (~/.config/dockyard/config.json): where the server is and which token to use."""
from __future__ import annotations

import json
import os
from pathlib import Path


def config_path() -> Path:
    base = os.environ.get("DOCKYARD_CONFIG") or os.path.join(
        os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "dockyard", "config.json")
    return Path(base)


def load_context() -> dict:
    p = config_path()
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


def save_context(url: str, token_file: Path | None, token: str | None = None, ca_file: str | None = None) -> None:
    p = config_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    data = {"url": url}
    if token_file is not None:
        data["token_file"] = str(token_file)
    elif token:
        data["token"] = token
    if ca_file:
        data["ca_file"] = str(ca_file)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
