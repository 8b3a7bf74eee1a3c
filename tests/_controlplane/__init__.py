"""A real Kubernetes control plane for integration tests.

etcd + kube-apiserver, built from the Go modules pinned in ``tests/controlplane/``.
Register the fixtures with ``pytest_plugins = ["tests._controlplane.fixtures"]``.
See ``tests/controlplane/README.md``. Submodules are imported lazily so that
``python -m tests._controlplane.server`` runs cleanly.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ControlPlane": "server",
    "ControlPlaneError": "server",
    "crds_dir": "server",
    "write_kubeconfig": "server",
    "Fault": "faults",
    "FaultProxy": "faults",
    "status_body": "faults",
    "Operator": "operator",
    "Identity": "rbac",
    "create_identity": "rbac",
}

__all__ = [  # noqa: RUF022 - same order as _EXPORTS
    "ControlPlane",
    "ControlPlaneError",
    "crds_dir",
    "write_kubeconfig",
    "Fault",
    "FaultProxy",
    "status_body",
    "Operator",
    "Identity",
    "create_identity",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(name)
