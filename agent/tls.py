"""The certificate of the agent's own API (logs, exec): given by flags, or made at start.

When the cluster uses TLS (the server URL is https) the server's calls to the agent must
not travel in clear text either. An operator may hand the agent a certificate and key
(--tls-cert/--tls-key, e.g. from a private CA the server trusts with --agent-ca); without
one, the agent makes a throw-away self-signed pair at start (the openssl command), in a
private temporary directory, and sends the certificate to the server at join, which pins
it. Against a plain-HTTP server the agent API stays plain HTTP, as before.
"""
from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


class TLSSetupError(Exception):
    """The agent cannot serve its API over TLS as configured."""


@dataclass(frozen=True)
class Material:
    cert: Path
    key: Path
    pem: str  # the certificate (chain) as sent to the server
    generated: bool


def wanted(servers: str | list[str], cert: str | Path | None, key: str | Path | None) -> bool:
    """Serve the API over TLS? When given a certificate, or when any server URL is https."""
    if bool(cert) != bool(key):
        raise TLSSetupError("the agent's --tls-cert and --tls-key go together")
    urls = servers.split(",") if isinstance(servers, str) else list(servers)
    return bool(cert) or any(u.strip().lower().startswith("https://") for u in urls)


def load(cert: str | Path, key: str | Path) -> Material:
    cert, key = Path(cert), Path(key)
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(cert), str(key))
        pem = cert.read_text()
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise TLSSetupError(f"cannot serve the agent API with {cert} and {key}: {exc}") from None
    return Material(cert, key, pem, False)


def generate(host: str) -> Material:
    """A self-signed certificate for `host` (valid 10 years: it lives as long as this process)."""
    if shutil.which("openssl") is None:
        raise TLSSetupError("the server URL is https, so the agent serves its API over TLS too, and making its "
                            "certificate needs the openssl command: install openssl, or give the agent "
                            "--tls-cert and --tls-key (DOCKYARD_AGENT_TLS_CERT / DOCKYARD_AGENT_TLS_KEY)")
    where = Path(tempfile.mkdtemp(prefix="dockyard-agent-tls-"))  # mode 0700
    cert, key = where / "cert.pem", where / "key.pem"
    names = ["DNS:localhost", "IP:127.0.0.1"]
    try:
        ipaddress.ip_address(host)
        names.append(f"IP:{host}")
    except ValueError:
        if host:
            names.append(f"DNS:{host}")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "3650", "-subj", "/CN=dockyard-agent",
                        "-addext", "subjectAltName=" + ",".join(dict.fromkeys(names)),
                        "-keyout", str(key), "-out", str(cert)], capture_output=True, text=True)
    if r.returncode != 0:
        raise TLSSetupError(f"openssl could not make the agent's certificate: {r.stderr.strip()[-300:]}")
    return Material(cert, key, cert.read_text(), True)


def server_context(m: Material) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(m.cert), str(m.key))
    return ctx


def discard(m: Material | None) -> None:
    if m is not None and m.generated:
        shutil.rmtree(m.cert.parent, ignore_errors=True)
