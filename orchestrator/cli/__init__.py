"""The `dockyard` command line: processes (server, agent, up) and client commands."""
