"""The gateway: routes HTTP requests by Host and path to the ready instances of services.

`routing` holds the pure decisions, `proxy.Gateway` the asyncio data plane around them.
"""
from .proxy import Gateway, GatewayError

__all__ = ["Gateway", "GatewayError"]
