"""The broker HTTP contract, v1 (ARCHITECTURE.md §6), in three modules:

- `models`: request and response bodies (pydantic, the edge where untrusted JSON enters);
- `signing`: Ed25519 callback signatures and key files;
- `client`: the async client the manager calls brokers with, and its `BrokerError` family.

Importing this package imports none of them: each pulls in its own libraries.
"""
