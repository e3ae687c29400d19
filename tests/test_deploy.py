"""deploy/: `kubectl kustomize deploy/` renders, and what it renders is what we promise.

The rendered objects are checked as a reviewer would: exactly the expected objects, all
in kidp-system, a hardened pod (non-root, read-only root, no capabilities, seccomp),
probes on the named port, least-privilege RBAC pinned rule by rule (a widened rule fails
here), one ServiceAccount used everywhere, the CRDs identical to crds/, and every field
known to the Kubernetes API (checked against the `kubernetes` client's models, so a typo
such as `readOnlyRootFileSystem` cannot slip through as an ignored field).

Also here: the build files next to manifests (crds/kustomization.yaml) are not taken for
objects by `load_crds()` or by the manifest loader, and scripts/bootstrap.sh's
`ensure_debian_tools` understands `command:package`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, broker_manifest

DEPLOY = REPO / "deploy"
CRD_DIR = REPO / "crds"
NAMESPACE = "kidp-system"
SERVICE_ACCOUNT = "kidp-ops"
LEASE = "kidp-ops-daemon"
GROUP = "platform.company.com"
KUBECTL = shutil.which("kubectl")
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
EXPECTED = Counter(
    {
        ("CustomResourceDefinition", f"brokers.{GROUP}"): 1,
        ("CustomResourceDefinition", f"databases.{GROUP}"): 1,
        ("Namespace", NAMESPACE): 1,
        ("ServiceAccount", SERVICE_ACCOUNT): 1,
        ("ClusterRole", "kidp-ops"): 1,
        ("ClusterRoleBinding", "kidp-ops"): 1,
        ("Role", "kidp-ops"): 1,
        ("RoleBinding", "kidp-ops"): 1,
        ("Deployment", "kidp-ops"): 1,
        ("Service", "kidp-ops"): 1,
    }
)
# (apiGroup, resource, resourceNames, verbs): the exact grants, one tuple per rule.
CLUSTER_RULES = {
    (GROUP, "brokers", (), ("get", "list", "watch")),
    (GROUP, "brokers/status", (), ("get", "patch")),
    (GROUP, "databases", (), ("get", "list", "watch", "patch")),
    (GROUP, "databases/status", (), ("get", "patch")),
    ("", "events", (), ("create", "patch")),
}
NAMESPACE_RULES = {
    ("", "secrets", (), ("get",)),
    ("coordination.k8s.io", "leases", (LEASE,), ("get", "update")),
    ("coordination.k8s.io", "leases", (), ("create",)),
}
DAEMON_ARGS = [
    "daemon",
    "--in-cluster",
    "--http-addr",
    "0.0.0.0:8080",
    "--leader-elect",
    "--log-format",
    "json",
    "--callback-url",
    "http://kidp-ops.kidp-system.svc:8080/v1/callback",
    "--broker-namespace",
    "kidp-system",
]
# What kustomize v5 says about `bases`, which deploy/kustomization.yaml keeps for the
# kustomize v2.0.3 inside Debian 12's kubectl (see the comment in that file).
KNOWN_WARNING = "# Warning: 'bases' is deprecated."

needs_kubectl = pytest.mark.skipif(
    KUBECTL is None,
    reason="kubectl is not on PATH: `./test` installs it (apt-get install kubernetes-client)",
)


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    assert KUBECTL is not None
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    result = subprocess.run(
        [KUBECTL, "kustomize", str(DEPLOY)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    unexpected = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not line.startswith(KNOWN_WARNING)
    ]
    assert not unexpected, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["daemon"]
    return dict(containers[0])


def rules(role: dict[str, Any]) -> set[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    """One tuple per (apiGroup, resource) of every rule, verbs in the order written."""
    found = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "resourceNames", "verbs"}, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                found.add(
                    (group, resource, tuple(rule.get("resourceNames", ())), tuple(rule["verbs"]))
                )
    return found


# --- the rendered objects --------------------------------------------------------------


@needs_kubectl
def test_renders_exactly_the_expected_objects(rendered: list[dict[str, Any]]) -> None:
    found = Counter((o["kind"], o["metadata"]["name"]) for o in rendered)
    assert found == EXPECTED


def test_kustomization_lists_every_manifest_in_deploy() -> None:
    """A new file in deploy/ that the kustomization forgets would never be applied."""
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    listed = set(kustomization.get("resources", []))
    on_disk = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    assert [*kustomization.get("bases", []), *listed].count("../crds") == 1
    crds = yaml.safe_load((CRD_DIR / "kustomization.yaml").read_text())
    assert set(crds["resources"]) == {p.name for p in CRD_DIR.glob(f"*.{GROUP}.yaml")}


@needs_kubectl
def test_namespace_first_then_crds(rendered: list[dict[str, Any]]) -> None:
    """`kubectl apply -k` creates in this order: the namespace and CRDs before users."""
    kinds = [o["kind"] for o in rendered]
    assert kinds[0] == "Namespace"
    assert kinds[1:3] == ["CustomResourceDefinition"] * 2


@needs_kubectl
def test_every_namespaced_object_is_in_kidp_system(rendered: list[dict[str, Any]]) -> None:
    for obj in rendered:
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in CLUSTER_SCOPED:
            assert namespace is None, obj["kind"]
        else:
            assert namespace == NAMESPACE, obj["kind"]


@needs_kubectl
def test_every_object_is_labelled(rendered: list[dict[str, Any]]) -> None:
    for obj in rendered:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "kidp-ops", obj["kind"]
        assert labels.get("app.kubernetes.io/part-of") == "kidp", obj["kind"]


@needs_kubectl
def test_every_field_is_known_to_kubernetes(rendered: list[dict[str, Any]]) -> None:
    for obj in rendered:
        if obj["kind"] == "CustomResourceDefinition":
            continue  # tests/test_crds.py checks these in depth
        assert unknown_fields(obj, f"V1{obj['kind']}", obj["kind"]) == []


def test_the_field_checker_finds_typos() -> None:
    pod = {"spec": {"containers": [{"name": "c", "securityContext": {"runAsUser": "1"}}]}}
    pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    assert unknown_fields(pod, "V1Pod", "Pod") == [
        "Pod.spec.containers[0].securityContext.runAsUser: '1' is not int",
        "Pod.spec.containers[0].securityContext.readOnlyRootFileSystem: unknown field",
    ]
    assert unknown_fields({"metadata": {"annotations": {"a": 1}}}, "V1Pod", "Pod") == [
        "Pod.metadata.annotations.a: 1 is not str"
    ]
    assert unknown_fields({"spec": {"containers": {}}}, "V1Pod", "Pod") == [
        "Pod.spec.containers: {} is not a list"
    ]


def unknown_fields(value: Any, type_name: str, path: str) -> list[str]:
    """Fields the API does not know, and scalars of the wrong type, by the client's models."""
    import kubernetes.client

    # The client spells containers `List[X]` / `Dict[str, X]` (older: `list[X]`, `dict(str, X)`).
    if type_name.lower().startswith("list["):
        inner = type_name[len("list[") : -1]
        if not isinstance(value, list):
            return [f"{path}: {value!r} is not a list"]
        return [
            p for i, item in enumerate(value) for p in unknown_fields(item, inner, f"{path}[{i}]")
        ]
    if type_name.lower().startswith(("dict[", "dict(")):
        inner = type_name[type_name.index(",") + 1 : -1].strip()
        if not isinstance(value, dict):
            return [f"{path}: {value!r} is not a map"]
        return [p for k, v in value.items() for p in unknown_fields(v, inner, f"{path}.{k}")]
    scalars = {"str": str, "int": int, "bool": bool}
    if type_name in scalars:
        wrong = not isinstance(value, scalars[type_name]) or (
            type_name == "int" and isinstance(value, bool)
        )
        return [f"{path}: {value!r} is not {type_name}"] if wrong else []
    if type_name in {"object", "datetime", "float"}:  # int-or-string, free-form, times
        return []
    model = getattr(kubernetes.client, type_name)  # an unknown spelling fails loudly
    if not isinstance(value, dict):
        return [f"{path}: {value!r} is not an object"]
    by_json = {json: model.openapi_types[attr] for attr, json in model.attribute_map.items()}
    found = []
    for key, item in value.items():
        if key in by_json:
            found += unknown_fields(item, by_json[key], f"{path}.{key}")
        else:
            found.append(f"{path}.{key}: unknown field")
    return found


@needs_kubectl
def test_crds_are_the_files_in_crds(rendered: list[dict[str, Any]]) -> None:
    files = {
        doc["metadata"]["name"]: doc
        for path in CRD_DIR.glob(f"*.{GROUP}.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    }
    crds = {o["metadata"]["name"]: o for o in rendered if o["kind"] == "CustomResourceDefinition"}
    assert set(crds) == set(files)
    for name, crd in crds.items():
        assert crd["spec"] == files[name]["spec"], name
        assert crd["apiVersion"] == files[name]["apiVersion"]


# --- the Deployment ----------------------------------------------------------------------


@needs_kubectl
def test_pod_is_hardened(rendered: list[dict[str, Any]]) -> None:
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    ctx = container(rendered)["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] == 10001
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx.get("privileged", False) is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    # The pod level agrees (nothing there loosens what the container asks for).
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(forbidden), forbidden
    # The only writable path is an emptyDir at /tmp.
    mounts = container(rendered)["volumeMounts"]
    assert [(m["name"], m["mountPath"]) for m in mounts] == [("tmp", "/tmp")]
    assert [(v["name"], set(v)) for v in pod["volumes"]] == [("tmp", {"name", "emptyDir"})]


@needs_kubectl
def test_daemon_command_env_and_port(rendered: list[dict[str, Any]]) -> None:
    deployment = one(rendered, "Deployment")
    daemon = container(rendered)
    assert deployment["spec"]["replicas"] == 2
    assert daemon["image"] == "ghcr.io/company/kidp-ops:0.1.0"
    assert "command" not in daemon  # the image's ENTRYPOINT is kidp-ops
    assert daemon["args"] == DAEMON_ARGS
    env = {e["name"]: e for e in daemon["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert daemon["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


@needs_kubectl
def test_probes_use_healthz_and_readyz_on_the_http_port(rendered: list[dict[str, Any]]) -> None:
    daemon = container(rendered)
    paths = {
        probe: (daemon[probe]["httpGet"]["path"], daemon[probe]["httpGet"]["port"])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert paths == {
        "startupProbe": ("/healthz", "http"),
        "livenessProbe": ("/healthz", "http"),
        "readinessProbe": ("/readyz", "http"),
    }


@needs_kubectl
def test_resources_and_shutdown(rendered: list[dict[str, Any]]) -> None:
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    resources = container(rendered)["resources"]
    assert resources["requests"] == {"cpu": "100m", "memory": "128Mi"}
    # No CPU limit on purpose (throttling would stall probes and lease renewals).
    assert resources["limits"] == {"memory": "256Mi"}
    assert pod["terminationGracePeriodSeconds"] == 30


@needs_kubectl
def test_replicas_prefer_different_nodes(rendered: list[dict[str, Any]]) -> None:
    spec = one(rendered, "Deployment")["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    [term] = spec["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= pod_labels.items()


@needs_kubectl
def test_service_reaches_the_daemon_and_is_scraped(rendered: list[dict[str, Any]]) -> None:
    service = one(rendered, "Service")
    pod_labels = one(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    annotations = service["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
    }


# --- RBAC -----------------------------------------------------------------------------------


@needs_kubectl
def test_cluster_role_is_exactly_least_privilege(rendered: list[dict[str, Any]]) -> None:
    assert rules(one(rendered, "ClusterRole")) == CLUSTER_RULES


@needs_kubectl
def test_role_is_exactly_least_privilege(rendered: list[dict[str, Any]]) -> None:
    role = one(rendered, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert rules(role) == NAMESPACE_RULES


@needs_kubectl
def test_no_wildcards_anywhere(rendered: list[dict[str, Any]]) -> None:
    for role in (one(rendered, "ClusterRole"), one(rendered, "Role")):
        assert "aggregationRule" not in role
        for rule in role["rules"]:
            assert "nonResourceURLs" not in rule
            for key in ("apiGroups", "resources", "resourceNames", "verbs"):
                assert not any("*" in item for item in rule.get(key, [])), rule


@needs_kubectl
def test_one_service_account_everywhere(rendered: list[dict[str, Any]]) -> None:
    account = one(rendered, "ServiceAccount")
    assert (account["metadata"]["name"], account["metadata"]["namespace"]) == (
        SERVICE_ACCOUNT,
        NAMESPACE,
    )
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == SERVICE_ACCOUNT
    assert pod["automountServiceAccountToken"] is True
    subject = {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
    for binding_kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = one(rendered, binding_kind)
        assert binding["subjects"] == [subject]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind,
            "name": one(rendered, role_kind)["metadata"]["name"],
        }


# --- build files are not objects ------------------------------------------------------------


def test_load_crds_keeps_only_crds() -> None:
    from kidp_ops.model.bundled import crd_schema, load_crds

    assert (CRD_DIR / "kustomization.yaml").is_file()
    crds = load_crds()
    assert {c["kind"] for c in crds} == {"CustomResourceDefinition"}
    assert sorted(c["metadata"]["name"] for c in crds) == [
        f"brokers.{GROUP}",
        f"databases.{GROUP}",
    ]
    assert crd_schema(f"brokers.{GROUP}") is not None


def test_directory_walk_skips_kustomize_build_files(tmp_path: Path) -> None:
    from kidp_ops.model.manifests import load, validate

    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    (tmp_path / "sub").mkdir()
    (tmp_path / "broker.yaml").write_text(yaml.safe_dump(broker_manifest("b")))
    for name in ("kustomization.yaml", "sub/kustomization.yml", "sub/Kustomization"):
        (tmp_path / name).write_text(yaml.safe_dump({**kustomization, "resources": ["x"]}))
    loaded = load([str(tmp_path)])
    assert [d.source for d in loaded.documents] == [str(tmp_path / "broker.yaml")]
    assert validate(loaded) == []
    # Named explicitly, a build file is read like any other file (and is no known kind).
    explicit = load([str(tmp_path / "kustomization.yaml")])
    assert [d.manifest["kind"] for d in explicit.documents] == ["Kustomization"]
    assert [p.field for p in validate(explicit)] == [".kind"]


def kidp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kidp_ops.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def test_validate_crds_dir_sees_only_the_crds() -> None:
    result = kidp("validate", str(CRD_DIR))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 object(s) valid" in result.stdout


def test_validate_deploy_dir_does_not_read_the_kustomization() -> None:
    """validate knows the kinds kidp-ops manages; built-in kinds are reported as unknown.

    Whatever it says about Deployment & co., it must not read kustomization.yaml and must
    not fail in any other way.
    """
    result = kidp("validate", str(DEPLOY))
    output = result.stdout + result.stderr
    assert result.returncode in (0, 1), output
    assert "Traceback" not in output
    assert "kustomization" not in output.lower()
    problems = [line for line in result.stdout.splitlines() if line.startswith(str(DEPLOY))]
    assert all("unknown kind" in line for line in problems), output


# --- scripts/bootstrap.sh -------------------------------------------------------------------


def test_ensure_debian_tools_maps_commands_to_packages() -> None:
    """`command:package` installs `package` when `command` is missing; plain names are both."""
    script = (
        "set -euo pipefail; source scripts/bootstrap.sh; id() { echo 1000; }; "
        "ensure_debian_tools sh:not-used kidp-no-such-tool:kidp-pkg kidp-plain-tool"
    )
    result = subprocess.run(
        ["bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == (
        "missing kidp-pkg kidp-plain-tool: install them (apt-get install kidp-pkg kidp-plain-tool)"
    )
    assert "ensure_debian_tools kubectl:kubernetes-client tmux" in (REPO / "test").read_text()


def test_the_deployment_args_parse_with_the_real_cli() -> None:
    """The container's arguments are ones `kidp-ops daemon` accepts (a renamed flag fails here)."""
    from kidp_ops.cli import build_parser

    deployment = next(
        d for d in yaml.safe_load_all((REPO / "deploy" / "deployment.yaml").read_text()) if d
    )
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    parsed = build_parser().parse_args(args)
    assert parsed.command == "daemon" and parsed.in_cluster and parsed.leader_elect
    assert parsed.http_addr == ("0.0.0.0", 8080)
    assert parsed.callback_url == "http://kidp-ops.kidp-system.svc:8080/v1/callback"
    assert parsed.broker_namespaces == ["kidp-system"]  # the one namespace rbac.yaml reads
