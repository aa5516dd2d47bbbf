"""Dockyard server: desired state in SQL, reconciled onto agents."""
__version__ = "0.1.0"
