"""How the server reaches an agent's API (logs, exec): which certificate it trusts.

- `--agent-ca FILE` (DOCKYARD_AGENT_CA): agents present certificates from the operator's CA;
  the usual checks apply, host name included (the agent URL's host must be in the
  certificate). Agents serving plain HTTP are refused.
- otherwise an agent serving HTTPS is pinned: the server trusts exactly the certificate
  the agent sent at join (the first one of its PEM, so a chain's CA does not vouch for
  others), with no host-name check (the pin is the identity);
- an HTTPS agent URL with neither (an agent that joined without sending its certificate):
  the system's CAs;
- plain HTTP, as before, unless the server itself serves TLS or --agent-ca is set: then a
  plain-HTTP agent is refused rather than sent its key in clear text.
The per-node agent key is sent on every call whatever the transport.
"""
from __future__ import annotations

import re
import ssl
from functools import lru_cache
from pathlib import Path

import httpx

from orchestrator.config import Settings

_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class AgentTLSError(Exception):
    """The server will not call this agent as configured (the message says why)."""


def first_cert(pem: str) -> str:
    m = _PEM.search(pem or "")
    if m is None:
        raise AgentTLSError("the certificate the agent sent at join is not PEM")
    return m.group(0)


@lru_cache(maxsize=1024)
def _pinned(pem: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=first_cert(pem))
    ctx.check_hostname = False  # the pinned certificate is the identity, wherever the agent is reached
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a pinned leaf is a trust anchor of its own
    return ctx


@lru_cache(maxsize=8)
def _ca(path: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=path)


def verify_for(settings: Settings, node: str, url: str, pin: str | None) -> ssl.SSLContext | bool:
    """httpx's `verify` for calling the agent of `node` at `url`; AgentTLSError when it must not be called."""
    https = url.lower().startswith("https://")
    if not https:
        if settings.agent_ca is not None or settings.tls_cert is not None:
            why = "--agent-ca is set" if settings.agent_ca is not None else "this server serves TLS"
            raise AgentTLSError(f"the agent of node {node} serves plain HTTP ({url}) and {why}: restart the agent "
                                "against the https server URL (it then serves TLS too) or with --tls-cert/--tls-key")
        return False  # unused for http
    try:
        if settings.agent_ca is not None:
            return _ca(str(Path(settings.agent_ca).resolve()))
        if pin:
            return _pinned(pin)
    except (OSError, ssl.SSLError) as exc:
        raise AgentTLSError(f"cannot set up TLS to the agent of node {node}: {exc}") from None
    return True


def client(verify: ssl.SSLContext | bool, follow: bool, connect_timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(connect_timeout, read=None if follow else 60.0),
                             verify=verify if verify is not False else True, trust_env=False)


def explain(exc: Exception, node: str, url: str, settings: Settings) -> str:
    """A human reason for a failed call to an agent."""
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        trusted = (f"the CA in --agent-ca {settings.agent_ca}" if settings.agent_ca is not None
                   else "the certificate it sent at join (pinned)")
        return (f"the agent of node {node} at {url} presented a certificate this server does not trust "
                f"(it trusts {trusted}): {text}")
    return f"cannot reach the agent of node {node} at {url}: {text}"
