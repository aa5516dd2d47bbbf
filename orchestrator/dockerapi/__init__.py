"""The Docker Engine API front door: the cluster as one virtual Docker host (docs/docker-api.md).

A separate listener of the server (`--docker-api host:port`) speaks enough of the Engine API
for the unmodified `docker` CLI and the docker SDK. A container made here is a Dockyard service
of one replica with source `docker-api`; every container of every service shows in `docker ps`
as `<node>/<name>`, like classic Swarm.

- translate.py: pure mapping between Engine API bodies and Dockyard specs and views.
- store.py: the database side (create, find, stop, start, remove), one transaction each.
- agents.py: calls to the nodes' agents (logs, inspect, images).
- app.py: the ASGI app: routes, auth, the Engine API's error shape; serve.py runs it.
"""
