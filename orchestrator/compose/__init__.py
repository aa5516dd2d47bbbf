"""Translate a Docker Compose file into Dockyard service bodies.

`translate()` turns a parsed compose mapping into one `PUT /v1/services/{name}` body per
service (each checked against `ServiceApply`) plus a list of warnings, one human line per
key that Dockyard cannot honour. Nothing is dropped silently: a key is either applied,
warned about, or refused with a `ComposeError` naming the service and key. The only I/O
is reading `env_file` files relative to `base_dir`; `load()` adds reading the YAML.

Semantics follow Compose/Swarm where Dockyard has an equivalent:
- Variables are interpolated as `docker compose` does (`${VAR:-default}`, `${VAR:?err}`, `$$`),
  from the mapping the caller passes (`load()` builds it from the `.env` file beside the compose
  file and the environment the CLI gives it): the translation itself never reads os.environ.
- Compose sizes ('512M', '128m', '1g') are binary, by Docker's rules, and become byte counts.
- `depends_on` becomes `Translation.depends_on` and `Translation.levels`: the order to apply in
  and what to wait for between levels, which the client does, as `docker compose up` does.
- Swarm's update `parallelism` + `order` become max_surge / max_unavailable.
- Health check timings default to Docker's (30s interval and timeout, 3 retries), not
  Dockyard's, because that is what the compose author saw run.
- Host privileges (privileged, cap_add, network_mode, pid, bind-mount volumes) are passed
  through to the spec; the server's --allow policy decides whether they may run.
- What would leave a stack broken if ignored is refused, naming the service and key: named
  volumes without a volume root, shared network namespaces, external or internal networks,
  fixed addresses, stop signals other than SIGTERM, `build` without `image`.

Modules: common (errors, result, value checks), interpolate (variables), fields (durations,
sizes, commands, environment), ports, deploy (deploy/update/restart/placement), host
(privileges, volumes), networks, depends (depends_on, links, apply order), service (one
service, `translate`), yaml_loader (`load`).
"""
from orchestrator.compose.common import ComposeError, Translation, stack_name
from orchestrator.compose.fields import convert_memory, parse_duration
from orchestrator.compose.interpolate import interpolate
from orchestrator.compose.service import translate
from orchestrator.compose.yaml_loader import load, variables

__all__ = ["ComposeError", "Translation", "translate", "load", "variables", "interpolate", "stack_name",
           "parse_duration", "convert_memory"]
