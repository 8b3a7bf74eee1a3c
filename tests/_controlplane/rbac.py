"""Least-privilege identities: the operator-generated Roles, bound to test ServiceAccounts.

The rules are copied from ``shared/spec/crds.md`` section 7 (the operator's
``reconcileRole`` for engram runners and ``ensureImpulseRBAC`` for impulses),
nothing more. ``create_identity`` makes a ServiceAccount, a Role with the given
rules and a RoleBinding, mints a token through the TokenRequest API and writes a
kubeconfig that authenticates as that ServiceAccount, so SDK code run with
``KUBECONFIG=<path>`` has exactly the permissions a real pod would have.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from .server import ControlPlane

RUNS = "runs.bubustack.io"
CORE = "bubustack.io"
TRANSPORT = "transport.bubustack.io"

#: crds.md 7.3, ``[op] internal/controller/runs/rbac.go reconcileRole``
ENGRAM_RUNNER_RULES: list[dict[str, Any]] = [
    {"apiGroups": [RUNS], "resources": ["stepruns"], "verbs": ["get", "watch"]},
    {"apiGroups": [RUNS], "resources": ["stepruns/status"], "verbs": ["patch", "update"]},
    {"apiGroups": [RUNS], "resources": ["effectclaims"], "verbs": ["get", "create", "update"]},
    {
        "apiGroups": [TRANSPORT],
        "resources": ["transportbindings"],
        "verbs": ["get", "list", "watch"],
    },
    {
        "apiGroups": [TRANSPORT],
        "resources": ["transportbindings/status"],
        "verbs": ["get", "patch", "update"],
    },
]

#: crds.md 7.2, ``[op] internal/controller/impulse_controller.go ensureImpulseRBAC``
IMPULSE_RULES: list[dict[str, Any]] = [
    {"apiGroups": [RUNS], "resources": ["storytriggers"], "verbs": ["create", "get"]},
    {"apiGroups": [RUNS], "resources": ["storyruns"], "verbs": ["get", "list", "patch"]},
    {"apiGroups": [RUNS], "resources": ["storyruns/status"], "verbs": ["patch"]},
    {"apiGroups": [CORE], "resources": ["impulses"], "verbs": ["get"]},
    {"apiGroups": [CORE], "resources": ["impulses/status"], "verbs": ["patch"]},
]

#: crds.md 7.4: what an engram calling StartStory needs on top of the runner Role
START_STORY_RULES: list[dict[str, Any]] = [
    {"apiGroups": [RUNS], "resources": ["storytriggers"], "verbs": ["create", "get"]},
    {"apiGroups": [RUNS], "resources": ["storyruns"], "verbs": ["get"]},
]


def engram_runner_rules(extra: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    return copy.deepcopy(ENGRAM_RUNNER_RULES) + copy.deepcopy(extra or [])


def impulse_rules(extra: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    return copy.deepcopy(IMPULSE_RULES) + copy.deepcopy(extra or [])


@dataclass(frozen=True)
class Identity:
    """A ServiceAccount identity with a kubeconfig that authenticates as it."""

    namespace: str
    service_account: str
    role: str
    kubeconfig_path: Path
    token: str  # treat as a secret: never log it
    rules: tuple[dict[str, Any], ...] = ()

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    def __repr__(self) -> str:  # keep the token out of pytest output
        return (
            f"Identity(username={self.username!r}, role={self.role!r}, "
            f"kubeconfig_path={str(self.kubeconfig_path)!r})"
        )


def _check(r: httpx.Response, what: str) -> dict[str, Any]:
    if r.status_code >= 300:
        raise RuntimeError(f"{what}: HTTP {r.status_code}: {r.text[:1000]}")
    body: dict[str, Any] = r.json()
    return body


def issue_token(
    client: httpx.Client,
    namespace: str,
    service_account: str,
    *,
    expiration_seconds: int = 6 * 3600,
) -> str:
    """Mint a ServiceAccount token with the TokenRequest API."""
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": expiration_seconds},
    }
    r = client.post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token", json=body
    )
    token: str = _check(r, f"TokenRequest for {namespace}/{service_account}")["status"]["token"]
    return token


def create_identity(
    cp: ControlPlane,
    namespace: str,
    name: str,
    rules: list[dict[str, Any]],
    *,
    kubeconfig_dir: Path | None = None,
    server: str | None = None,
) -> Identity:
    """ServiceAccount + Role(rules) + RoleBinding named ``name`` in ``namespace``.

    Returns an ``Identity`` whose kubeconfig (default context namespace =
    ``namespace``) authenticates with a TokenRequest token. ``server`` overrides
    the API URL written into the kubeconfig (e.g. the fault proxy).
    """
    with cp.client() as c:
        _check(
            c.post(
                f"/api/v1/namespaces/{namespace}/serviceaccounts", json={"metadata": {"name": name}}
            ),
            "create ServiceAccount",
        )
        _check(
            c.post(
                f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
                json={"metadata": {"name": name}, "rules": rules},
            ),
            "create Role",
        )
        _check(
            c.post(
                f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
                json={
                    "metadata": {"name": name},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Role",
                        "name": name,
                    },
                    "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
                },
            ),
            "create RoleBinding",
        )
        token = issue_token(c, namespace, name)
    assert cp.workdir is not None
    directory = kubeconfig_dir or (cp.workdir / "kubeconfigs")
    directory.mkdir(parents=True, exist_ok=True)
    path = cp.write_kubeconfig(
        directory / f"{namespace}.{name}.kubeconfig",
        token=token,
        namespace=namespace,
        server=server,
    )
    return Identity(namespace, name, name, path, token, tuple(copy.deepcopy(rules)))


def engram_runner_identity(
    cp: ControlPlane,
    namespace: str,
    *,
    story_run: str = "test-run",
    extra_rules: list[dict[str, Any]] | None = None,
) -> Identity:
    """The ``<storyRun>-engram-runner`` identity the operator creates per StoryRun."""
    return create_identity(
        cp, namespace, f"{story_run}-engram-runner", engram_runner_rules(extra_rules)
    )


def impulse_identity(
    cp: ControlPlane,
    namespace: str,
    *,
    impulse: str = "test-impulse",
    extra_rules: list[dict[str, Any]] | None = None,
) -> Identity:
    """The ``<impulse>-impulse-runner`` identity the operator creates per Impulse."""
    return create_identity(cp, namespace, f"{impulse}-impulse-runner", impulse_rules(extra_rules))
