"""ServiceAccount identities: a token and a kubeconfig that authenticate as the account.

The identities the operator makes for engram runners and Impulses come from the operator
itself (``workloads.operator_identity``: its ServiceAccount, its generated Role); this
module keeps no copy of those rules. ``create_identity`` makes a ServiceAccount with a Role of
the caller's own rules (a test's or a user's ServiceAccount, not the operator's), and
``issue_token`` mints a TokenRequest token for any ServiceAccount, so SDK code run with
``KUBECONFIG=<path>`` has exactly that account's permissions.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from .server import ControlPlane


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
