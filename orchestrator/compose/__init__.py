"""Translate a Docker Compose file into Dockyard service bodies.

`translate()` turns a parsed compose mapping into one `PUT /v1/services/{name}` body per
service (each checked against `ServiceApply`) plus a list of warnings, one human line per
key that Dockyard cannot honour. Nothing is dropped silently: a key is either applied,
warned about, or refused with a `ComposeError` naming the service and key. The only I/O
is reading `env_file` files relative to `base_dir`; `load()` adds reading the YAML.

Semantics follow Compose/Swarm where Dockyard has an equivalent:
- Compose sizes ('512M', '1g') are binary, Dockyard's bare 'M' is decimal, so sizes are
  rewritten with an explicit binary unit ('512Mi').
- Swarm's update `parallelism` + `order` become max_surge / max_unavailable.
- Health check timings default to Docker's (30s interval and timeout, 3 retries), not
  Dockyard's, because that is what the compose author saw run.
- Host privileges (privileged, cap_add, network_mode, pid, bind-mount volumes) are passed
  through to the spec; the server's --allow policy decides whether they may run.
- Variables (`${VAR}`) are not interpolated: the package must not depend on os.environ.

Modules: common (errors, result, value checks), fields (durations, sizes, commands,
environment), ports, deploy (deploy/update/restart/placement), host (privileges, volumes),
service (one service, `translate`), yaml_loader (`load`).
"""
from orchestrator.compose.common import ComposeError, Translation, stack_name
from orchestrator.compose.fields import convert_memory, parse_duration
from orchestrator.compose.service import translate
from orchestrator.compose.yaml_loader import load

__all__ = ["ComposeError", "Translation", "translate", "load", "stack_name", "parse_duration", "convert_memory"]
