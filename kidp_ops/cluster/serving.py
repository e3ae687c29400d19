"""The embedded store served as a Kubernetes API for kubectl (`kidp-ops dev`, `kidp-ops serve`).

    async with serve_store(cluster, state_dir, port=DEFAULT_PORT) as api:
        print(api.export_line())        # export KUBECONFIG=.kidp/kubeconfig

Decisions:

- **Loopback only.** The facade (`apiserver`) listens on 127.0.0.1; no option binds it
  elsewhere.
- **TLS from a CA of its own, made at every start.** An ECDSA P-256 CA and a server
  certificate for 127.0.0.1 and localhost, valid for a year, live in memory only (the
  server key touches disk for the instant `ssl` needs a file, in a private temporary
  directory). Nothing on disk can mint certificates, and the kubeconfig carries the CA,
  so kubectl verifies the server as it verifies a cluster's.
- **A bearer token, new at every start**, required on every request (health probes
  included): a process that has not read the kubeconfig can use nothing. A restart
  rewrites the kubeconfig, so a shell with `KUBECONFIG` exported keeps working, while a
  token copied elsewhere stops.
- **The kubeconfig** is `STATE/kubeconfig` (mode 0600, written atomically, only once the
  port is bound, so a second server that fails to start leaves the first one's file
  alone) with one context, `kidp-dev`, whose namespace is `kidp-system`, where the
  Brokers live: `kubectl get brokers` answers at once. It stays after exit: kubectl then
  says the connection was refused, which is clearer than falling back to localhost:8080.
"""

from __future__ import annotations

import base64
import datetime as dt
import errno
import ipaddress
import os
import secrets
import shlex
import ssl
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kidp_ops.cluster.apiserver import serve
from kidp_ops.cluster.base import Cluster

HOST = "127.0.0.1"
DEFAULT_PORT = 18443
CONTEXT = "kidp-dev"
NAMESPACE = "kidp-system"
KUBECONFIG_FILE = "kubeconfig"
VALID_DAYS = 365


class ServeError(Exception):
    """The API cannot be served (the port is taken, ...); one line for the user."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """What one run of the server proves itself with, and what it asks of clients."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    token: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    *,
    subject: str,
    issuer: x509.Name | None,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    ca: bool,
) -> x509.Certificate:
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer or _name(subject))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
    else:
        usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
        hosts: list[x509.GeneralName] = [
            x509.IPAddress(ipaddress.ip_address(HOST)),
            x509.DNSName("localhost"),
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(hosts), critical=False)
        server_auth = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
        builder = builder.add_extension(server_auth, critical=False)
    builder = builder.add_extension(usage, critical=True)
    return builder.sign(signer, hashes.SHA256())


def make_credentials(now: dt.datetime | None = None) -> Credentials:
    """A new CA, a server certificate it signed for 127.0.0.1/localhost, and a token."""
    now = now or dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    server_key = ec.generate_private_key(ec.SECP256R1())
    tag = secrets.token_hex(4)
    ca = _certificate(
        subject=f"kidp-ops API CA {tag}", issuer=None, key=ca_key, signer=ca_key, now=now, ca=True
    )
    cert = _certificate(
        subject=f"kidp-ops API {tag}",
        issuer=ca.subject,
        key=server_key,
        signer=ca_key,
        now=now,
        ca=False,
    )
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Credentials(
        ca_pem=ca.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key_pem,
        token=secrets.token_urlsafe(32),
    )


def server_context(credentials: Credentials) -> ssl.SSLContext:
    """The TLS context serving the credentials' certificate (TLS 1.2 or newer)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # ssl loads a key only from a file: it exists for this call, in a 0700 directory.
    with tempfile.TemporaryDirectory(prefix="kidp-tls-") as private:
        cert_file, key_file = Path(private) / "tls.crt", Path(private) / "tls.key"
        cert_file.write_bytes(credentials.cert_pem)
        key_file.touch(mode=0o600)
        key_file.write_bytes(credentials.key_pem)
        context.load_cert_chain(cert_file, key_file)
    return context


def kubeconfig(url: str, credentials: Credentials, *, namespace: str = NAMESPACE) -> dict[str, Any]:
    """A kubeconfig with the one context `kidp-dev`: the server, its CA, the token."""
    ca_data = base64.b64encode(credentials.ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": CONTEXT, "cluster": {"server": url, "certificate-authority-data": ca_data}}
        ],
        "users": [{"name": CONTEXT, "user": {"token": credentials.token}}],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace},
            }
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600, atomically (readers never see half a file)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@dataclass(frozen=True, slots=True)
class ServedApi:
    url: str
    kubeconfig: Path
    context: str = CONTEXT

    def export_line(self) -> str:
        """The one line a user needs: `export KUBECONFIG=.kidp/kubeconfig`."""
        return f"export KUBECONFIG={shlex.quote(str(self.kubeconfig))}"


@asynccontextmanager
async def serve_store(
    cluster: Cluster, state: str | os.PathLike[str], *, port: int = DEFAULT_PORT
) -> AsyncIterator[ServedApi]:
    """Serve `cluster` on 127.0.0.1:`port` (0: any free port) with TLS and a token, and
    write `state/kubeconfig` for it. A port that cannot be bound is a ServeError."""
    credentials = make_credentials()
    async with AsyncExitStack() as stack:
        try:
            url = await stack.enter_async_context(
                serve(cluster, HOST, port, ssl=server_context(credentials), token=credentials.token)
            )
        except OSError as exc:
            in_use = exc.errno == errno.EADDRINUSE
            reason = "the port is in use" if in_use else (exc.strerror or str(exc))
            raise ServeError(
                f"cannot serve the Kubernetes API on {HOST}:{port}: {reason} (is another "
                "`kidp-ops dev` or `kidp-ops serve` running? pick a port with --api-port)"
            ) from None
        path = Path(state) / KUBECONFIG_FILE
        write_private(path, yaml.safe_dump(kubeconfig(url, credentials), sort_keys=False))
        yield ServedApi(url=url, kubeconfig=path)
