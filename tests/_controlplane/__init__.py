"""A real Kubernetes control plane (etcd + kube-apiserver, built from Go modules) for integration tests.

Register the fixtures with ``pytest_plugins = ["tests._controlplane.fixtures"]``.
See ``tests/controlplane/README.md``.
"""

from .faults import Fault, FaultProxy, status_body
from .rbac import ENGRAM_RUNNER_RULES, IMPULSE_RULES, START_STORY_RULES, Identity, create_identity
from .server import ControlPlane, ControlPlaneError, crds_dir, write_kubeconfig

__all__ = [
    "ENGRAM_RUNNER_RULES",
    "IMPULSE_RULES",
    "START_STORY_RULES",
    "ControlPlane",
    "ControlPlaneError",
    "Fault",
    "FaultProxy",
    "Identity",
    "create_identity",
    "crds_dir",
    "status_body",
    "write_kubeconfig",
]
