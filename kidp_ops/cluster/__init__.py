"""The Cluster port (`base`) and its adapters: `embedded` (SQLite, in-process) and `kube`
(the official client, the only module tree that imports `kubernetes`); `target` opens the
one a command asks for; `apiserver` serves any Cluster as a Kubernetes REST API.

Importing this package imports none of them.
"""
