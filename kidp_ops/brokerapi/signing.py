"""Ed25519 signatures on broker callbacks (ARCHITECTURE.md §6).

A broker signs `timestamp + "." + raw body bytes` with its private key and sends the
signature (base64) in `X-KIDP-Signature`, the timestamp (RFC 3339) in `X-KIDP-Timestamp`
and its name in `X-KIDP-Broker-Name` (`namespace/name`, or the bare name as seed brokers
send it). The manager verifies against the key in that Broker's `spec.callbackPublicKey`
(pinned by its operator) or else `status.callbackPublicKey` (registered by the broker):
the base64 of the raw 32-byte public key, never a key sent with the request.

Key files hold the private key as unencrypted PKCS#8 PEM (what `save_private_key`
writes, mode 0600) or as the base64 of the raw 32-byte private key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

HEADER_BROKER_NAME = "X-KIDP-Broker-Name"
HEADER_TIMESTAMP = "X-KIDP-Timestamp"
HEADER_SIGNATURE = "X-KIDP-Signature"
HEADER_PUBLIC_KEY = "X-KIDP-Public-Key"  # sent by seed brokers; never trusted by kidp-ops

KEY_BYTES = 32
KEY_FILE_MODE = 0o600


class KeyFileError(Exception):
    """A key file that cannot be read, parsed or written; the message names the file."""


def signed_message(timestamp: str, body: bytes) -> bytes:
    """The exact bytes that are signed: `timestamp + "." + body`."""
    return timestamp.encode() + b"." + body


def sign(private_key: Ed25519PrivateKey, timestamp: str, body: bytes) -> str:
    """The base64 Ed25519 signature of `timestamp + "." + body`."""
    return base64.b64encode(private_key.sign(signed_message(timestamp, body))).decode("ascii")


def verify(public_key_b64: str, timestamp: str, body: bytes, signature: str) -> bool:
    """True when `signature` is valid for `timestamp + "." + body` under the public key.

    Never raises: a malformed key or signature is simply not valid. Checking that the
    timestamp is recent and not replayed is the receiver's job.
    """
    try:
        public_key = public_key_from_b64(public_key_b64)
        raw_signature = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        return False
    try:
        public_key.verify(raw_signature, signed_message(timestamp, body))
    except InvalidSignature:
        return False
    return True


def callback_headers(
    private_key: Ed25519PrivateKey, *, broker_name: str, timestamp: str, body: bytes
) -> dict[str, str]:
    """The three headers of a signed callback whose body is `body`."""
    return {
        HEADER_BROKER_NAME: broker_name,
        HEADER_TIMESTAMP: timestamp,
        HEADER_SIGNATURE: sign(private_key, timestamp, body),
    }


# --- keys -------------------------------------------------------------------------------


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Base64 of the raw 32-byte public key: the value of `status.callbackPublicKey`."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    """Parse a `callbackPublicKey`; ValueError when it is not base64 of 32 bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"public key is not base64: {exc}") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"public key must be {KEY_BYTES} bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def private_key_to_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def parse_private_key(data: bytes) -> Ed25519PrivateKey:
    """A private key from PKCS#8 PEM or from base64 of the raw 32 bytes; ValueError if neither."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text, password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a readable PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"PEM key is {type(key).__name__}, not Ed25519")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("neither PEM nor base64") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"raw private key must be {KEY_BYTES} bytes, got {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Read a key file (PEM or raw base64); KeyFileError names the file and the problem."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    try:
        return parse_private_key(data)
    except ValueError as exc:
        raise KeyFileError(f"key file {path}: {exc}") from None


def save_private_key(key: Ed25519PrivateKey, path: str | os.PathLike[str]) -> None:
    """Write `key` as PEM to a new file with mode 0600; FileExistsError when it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    with os.fdopen(fd, "wb") as file:
        file.write(private_key_to_pem(key))


def load_or_create_private_key(path: str | os.PathLike[str]) -> tuple[Ed25519PrivateKey, bool]:
    """The key in `path`, or a new one saved there (mode 0600); True when it was created."""
    if Path(path).exists():
        return load_private_key(path), False
    key = generate_private_key()
    try:
        save_private_key(key, path)
    except FileExistsError:  # another process created it first: use theirs
        return load_private_key(path), False
    except OSError as exc:
        with contextlib.suppress(OSError):
            Path(path).unlink()
        raise KeyFileError(f"cannot write key file {path}: {exc.strerror or exc}") from None
    return key, True
