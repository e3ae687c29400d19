"""Serving the store for kubectl: the certificates, the token, the kubeconfig, the refusals.

Real TLS on 127.0.0.1: a client that does not trust the run's CA, or that has not read the
token, gets nothing.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import socket
import ssl
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from kidp_ops.cluster.embedded import EmbeddedCluster
from kidp_ops.cluster.serving import (
    CONTEXT,
    ServedApi,
    ServeError,
    make_credentials,
    serve_store,
    write_private,
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedCluster]:
    cluster = await EmbeddedCluster.open(tmp_path)
    try:
        yield cluster
    finally:
        await cluster.close()


def trusting(config: dict[str, object]) -> ssl.SSLContext:
    """A client TLS context trusting exactly the kubeconfig's CA."""
    cluster = config["clusters"][0]["cluster"]  # type: ignore[index]
    ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    return ssl.create_default_context(cadata=ca)


def test_the_server_certificate_is_signed_by_the_ca_for_loopback_only() -> None:
    now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    credentials = make_credentials(now)
    ca = x509.load_pem_x509_certificate(credentials.ca_pem)
    cert = x509.load_pem_x509_certificate(credentials.cert_pem)
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert cert.not_valid_after_utc == now + dt.timedelta(days=365)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    again = make_credentials(now)
    assert again.token != credentials.token and again.ca_pem != credentials.ca_pem
    assert len(credentials.token) >= 40


def test_write_private_is_0600_and_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "new")
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["kubeconfig"]


def test_the_export_line_quotes_what_a_shell_would_split() -> None:
    assert ServedApi("u", Path(".kidp/kubeconfig")).export_line() == (
        "export KUBECONFIG=.kidp/kubeconfig"
    )
    assert ServedApi("u", Path("my state/kubeconfig")).export_line() == (
        "export KUBECONFIG='my state/kubeconfig'"
    )


async def test_serves_tls_with_the_token_and_writes_the_kubeconfig(
    store: EmbeddedCluster, tmp_path: Path
) -> None:
    async with serve_store(store, tmp_path, port=0) as api:
        assert api.url.startswith("https://127.0.0.1:")
        assert api.kubeconfig == tmp_path / "kubeconfig"
        assert stat.S_IMODE(api.kubeconfig.stat().st_mode) == 0o600
        config = yaml.safe_load(api.kubeconfig.read_text())
        assert config["current-context"] == CONTEXT == "kidp-dev"
        context = config["contexts"][0]["context"]
        assert context["namespace"] == "kidp-system"
        assert config["clusters"][0]["cluster"]["server"] == api.url
        token = config["users"][0]["user"]["token"]
        headers = {"Authorization": f"Bearer {token}"}
        connector = aiohttp.TCPConnector(ssl=trusting(config))
        async with aiohttp.ClientSession(connector=connector) as http:
            async with http.get(
                f"{api.url}/apis/platform.company.com/v1/brokers", headers=headers
            ) as answer:
                assert answer.status == 200
                assert (await answer.json())["kind"] == "BrokerList"
            for wrong in ({}, {"Authorization": "Bearer nope"}, {"Authorization": token}):
                async with http.get(f"{api.url}/healthz", headers=wrong) as refused:
                    assert refused.status == 401
                    status = await refused.json()
                    assert (status["kind"], status["reason"]) == ("Status", "Unauthorized")


async def test_a_client_that_does_not_trust_the_ca_is_refused(
    store: EmbeddedCluster, tmp_path: Path
) -> None:
    async with serve_store(store, tmp_path, port=0) as api:
        config = yaml.safe_load(api.kubeconfig.read_text())
        token = config["users"][0]["user"]["token"]
        headers = {"Authorization": f"Bearer {token}"}
        strangers_ca = ssl.create_default_context(cadata=make_credentials().ca_pem.decode())
        for context in (strangers_ca, ssl.create_default_context()):
            connector = aiohttp.TCPConnector(ssl=context)
            async with aiohttp.ClientSession(connector=connector) as http:
                with pytest.raises(aiohttp.ClientConnectorCertificateError):
                    await http.get(f"{api.url}/version", headers=headers)
        plain = api.url.replace("https://", "http://")
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.ClientError):  # no TLS, no answer
                await http.get(f"{plain}/version", headers=headers)


async def test_a_taken_port_is_one_line_and_leaves_the_kubeconfig_alone(
    store: EmbeddedCluster, tmp_path: Path
) -> None:
    (tmp_path / "kubeconfig").write_text("the running server's")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError) as caught:
            async with serve_store(store, tmp_path, port=port):
                pass
    message = str(caught.value)
    assert f"127.0.0.1:{port}: the port is in use" in message
    assert "--api-port" in message and "\n" not in message
    assert (tmp_path / "kubeconfig").read_text() == "the running server's"


async def test_stopping_ends_open_watches(store: EmbeddedCluster, tmp_path: Path) -> None:
    async with serve_store(store, tmp_path, port=0) as api:
        config = yaml.safe_load(api.kubeconfig.read_text())
        headers = {"Authorization": f"Bearer {config['users'][0]['user']['token']}"}
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusting(config)))
        response = await http.get(
            f"{api.url}/apis/platform.company.com/v1/brokers?watch=true", headers=headers
        )
        assert response.status == 200
    try:
        read = await asyncio.wait_for(response.content.read(), 10)
        assert read == b""  # the stream ended when the server stopped
    finally:
        response.close()
        await http.close()
