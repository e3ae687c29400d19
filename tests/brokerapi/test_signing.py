"""Ed25519 callback signatures and key files."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from kidp_ops.brokerapi import signing

TIMESTAMP = "2026-01-02T03:04:05Z"
BODY = b'{"deploymentId":"dep-1","status":"success"}'


def test_sign_and_verify_round_trip() -> None:
    key = signing.generate_private_key()
    public = signing.public_key_b64(key)
    assert len(base64.b64decode(public)) == 32
    signature = signing.sign(key, TIMESTAMP, BODY)
    assert len(base64.b64decode(signature)) == 64
    assert signing.verify(public, TIMESTAMP, BODY, signature)


def test_the_signed_message_is_timestamp_dot_body() -> None:
    key = signing.generate_private_key()
    raw = base64.b64decode(signing.sign(key, TIMESTAMP, BODY))
    key.public_key().verify(raw, TIMESTAMP.encode() + b"." + BODY)  # raises if not


@pytest.mark.parametrize("index", [0, 10, len(BODY) - 1])
def test_any_changed_body_byte_fails(index: int) -> None:
    key = signing.generate_private_key()
    signature = signing.sign(key, TIMESTAMP, BODY)
    changed = bytearray(BODY)
    changed[index] ^= 0x20
    assert not signing.verify(signing.public_key_b64(key), TIMESTAMP, bytes(changed), signature)


def test_another_key_or_timestamp_fails() -> None:
    key = signing.generate_private_key()
    signature = signing.sign(key, TIMESTAMP, BODY)
    other = signing.public_key_b64(signing.generate_private_key())
    assert not signing.verify(other, TIMESTAMP, BODY, signature)
    public = signing.public_key_b64(key)
    assert not signing.verify(public, "2026-01-02T03:04:06Z", BODY, signature)
    # moving the separator between timestamp and body must not verify either
    assert not signing.verify(public, TIMESTAMP + ".", BODY[1:], signature)


@pytest.mark.parametrize(
    ("public", "signature"),
    [
        ("not base64!", None),
        (base64.b64encode(b"short").decode(), None),
        (None, "not base64!"),
        (None, base64.b64encode(b"x" * 64).decode()),
        (None, ""),
    ],
)
def test_malformed_keys_and_signatures_are_just_invalid(
    public: str | None, signature: str | None
) -> None:
    key = signing.generate_private_key()
    assert not signing.verify(
        public if public is not None else signing.public_key_b64(key),
        TIMESTAMP,
        BODY,
        signature if signature is not None else signing.sign(key, TIMESTAMP, BODY),
    )


def test_callback_headers() -> None:
    key = signing.generate_private_key()
    headers = signing.callback_headers(key, broker_name="ns/b", timestamp=TIMESTAMP, body=BODY)
    assert headers["X-KIDP-Broker-Name"] == "ns/b"
    assert headers["X-KIDP-Timestamp"] == TIMESTAMP
    assert signing.verify(signing.public_key_b64(key), TIMESTAMP, BODY, headers["X-KIDP-Signature"])


def test_key_files_pem_and_raw_base64(tmp_path: Path) -> None:
    key, created = signing.load_or_create_private_key(tmp_path / "k.pem")
    assert created
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    again, created_again = signing.load_or_create_private_key(tmp_path / "k.pem")
    assert not created_again
    assert signing.public_key_b64(again) == signing.public_key_b64(key)

    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    (tmp_path / "k.b64").write_text(base64.b64encode(raw).decode() + "\n")
    from_raw = signing.load_private_key(tmp_path / "k.b64")
    assert signing.public_key_b64(from_raw) == signing.public_key_b64(key)


def test_bad_key_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("hello")
    with pytest.raises(signing.KeyFileError, match=r"bad.key: neither PEM nor base64"):
        signing.load_private_key(bad)
    with pytest.raises(signing.KeyFileError, match="cannot read key file"):
        signing.load_private_key(tmp_path / "missing.key")
    with pytest.raises(signing.KeyFileError, match="cannot write key file"):
        signing.load_or_create_private_key(tmp_path / "no-such-dir" / "k.pem")


def test_public_key_parsing() -> None:
    public = signing.public_key_b64(signing.generate_private_key())
    assert signing.public_key_b64(signing.public_key_from_b64(public)) == public
    with pytest.raises(ValueError, match="32 bytes"):
        signing.public_key_from_b64(base64.b64encode(b"abc").decode())
