"""Dockyard agent: makes the local Docker engine run what the server assigned to this node."""
