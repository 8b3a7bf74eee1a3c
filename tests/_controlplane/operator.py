"""Run the real BubuStack operator (bobrapet's manager, as released) on the test control plane.

``Operator(cp).start()`` installs what the module's ``config/`` kustomizations would, read from
the Go module cache at run time (never copied into this repository), then starts the manager:

* ``config/rbac``: every resource its ``kustomization.yaml`` lists, with the default
  overlay's ``namespace: bobrapet-system`` and ``namePrefix: bobrapet-`` applied, so the manager
  runs as ServiceAccount ``bobrapet-system/bobrapet-controller-manager`` bound to
  ``bobrapet-manager-role`` (a TokenRequest token in its own kubeconfig, not the admin cert);
* ``config/manager/operator-config.yaml``: the ConfigMap ``bobrapet-system/
  bobrapet-operator-config`` that ``--config-namespace``/``--config-name`` point at;
* the manager: webhooks on (``ENABLE_WEBHOOKS=true``) with a serving certificate for
  ``127.0.0.1`` from the control plane's CA, leader election off, metrics off
  (``--metrics-bind-address=0``), health probes on a free loopback port, and its webhook port
  from ``BUBU_TEST_WEBHOOK_PORT`` (the one overlay file of the build, see ``build.OPERATOR``);
* ``config/webhook/manifests.yaml``: the Mutating/ValidatingWebhookConfigurations, each
  ``clientConfig.service`` replaced by ``url: https://127.0.0.1:<port><path>`` and the CA bundle.

``start()`` returns once ``/readyz`` (which includes the webhook server) answers and the API
server really calls both webhook configurations (dry-run probes). Logs go to ``log_path``.

``python -m tests._controlplane.operator`` starts a control plane with the operator and waits
(benchmarks, manual runs); it prints the admin kubeconfig and the operator's log path.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import httpx
import yaml

from . import build
from .server import ControlPlane, ControlPlaneError, _log_tail, _spawn, _stop_process, free_port

MODULE = "github.com/bubustack/bobrapet"
#: what config/default/kustomization.yaml applies on top of the pieces
SYSTEM_NAMESPACE = "bobrapet-system"
NAME_PREFIX = "bobrapet-"
SERVICE_ACCOUNT = NAME_PREFIX + "controller-manager"
CONFIG_NAME = NAME_PREFIX + "operator-config"
WEBHOOK_CERT = "operator-webhook"

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NAMESPACED = {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Service", "Deployment"}
_PATHS = {
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "MutatingWebhookConfiguration": (
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
    ),
    "ValidatingWebhookConfiguration": (
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
    ),
}


class OperatorError(ControlPlaneError):
    """The operator failed to start; the message carries its log tail."""


def config_dir() -> Path:
    """The operator module's ``config/`` directory: ``$BUBU_OPERATOR_CONFIG_DIR`` or the Go
    module cache entry of the version ``tests/operator/go.mod`` requires."""
    env = os.environ.get("BUBU_OPERATOR_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    go = build.find_go()
    return build.module_dir_of(go, MODULE, build.OPERATOR.module_dir) / "config"


def _load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all(path.read_text(), Loader=_YAML_LOADER) if d]


def kustomize(doc: dict[str, Any]) -> dict[str, Any]:
    """What the default overlay does to one resource: namespace and name prefix, including
    the role references and ServiceAccount subjects of bindings."""
    doc = copy.deepcopy(doc)
    meta = doc.setdefault("metadata", {})
    meta["name"] = NAME_PREFIX + meta["name"]
    if doc["kind"] in _NAMESPACED:
        meta["namespace"] = SYSTEM_NAMESPACE
    if "roleRef" in doc:
        doc["roleRef"]["name"] = NAME_PREFIX + doc["roleRef"]["name"]
    for subject in doc.get("subjects") or []:
        if subject.get("kind") == "ServiceAccount":
            subject["name"] = NAME_PREFIX + subject["name"]
            subject["namespace"] = SYSTEM_NAMESPACE
    return doc


def rbac_resources(config: Path) -> list[dict[str, Any]]:
    """Every resource ``config/rbac/kustomization.yaml`` lists, kustomized."""
    kustomization = yaml.load((config / "rbac" / "kustomization.yaml").read_text(), _YAML_LOADER)
    docs: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        docs += [kustomize(d) for d in _load(config / "rbac" / name)]
    return docs


def operator_config_map(config: Path, overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """``config/manager/operator-config.yaml`` as the manager finds it (plus ``overrides``)."""
    (doc,) = [
        kustomize(d)
        for d in _load(config / "manager" / "operator-config.yaml")
        if d["kind"] == "ConfigMap"
    ]
    doc["data"] = {**(doc.get("data") or {}), **(overrides or {})}
    return doc


def webhook_configurations(config: Path, base_url: str, ca_pem: bytes) -> list[dict[str, Any]]:
    """``config/webhook/manifests.yaml`` with every ``clientConfig`` pointed at ``base_url``."""
    bundle = base64.b64encode(ca_pem).decode()
    docs = []
    for raw in _load(config / "webhook" / "manifests.yaml"):
        doc = kustomize(raw)
        for hook in doc["webhooks"]:
            path = hook["clientConfig"]["service"].get("path", "/")
            hook["clientConfig"] = {"url": base_url + path, "caBundle": bundle}
        docs.append(doc)
    return docs


def _apply(c: httpx.Client, doc: dict[str, Any]) -> None:
    collection = _PATHS[doc["kind"]].format(ns=doc["metadata"].get("namespace", ""))
    r = c.post(collection, json=doc)
    if r.status_code == 409:
        name = doc["metadata"]["name"]
        current = c.get(f"{collection}/{name}")
        if current.status_code == 200:
            doc = {**doc, "metadata": {**doc["metadata"]}}
            doc["metadata"]["resourceVersion"] = current.json()["metadata"]["resourceVersion"]
            r = c.put(f"{collection}/{name}", json=doc)
    if r.status_code >= 300:
        raise OperatorError(
            f"applying {doc['kind']} {doc['metadata']['name']}: HTTP {r.status_code}: "
            f"{r.text[:1000]}"
        )


class Operator:
    """The manager process and what it needs in the cluster; see the module docstring.

    Attributes once started: ``log_path``, ``webhook_url``, ``probe_url``, ``kubeconfig_path``
    (its ServiceAccount), ``config`` (the module's ``config/`` directory), ``startup_seconds``.
    """

    def __init__(
        self,
        cp: ControlPlane,
        *,
        bin_dir: Path | None = None,
        config: Path | None = None,
        config_overrides: dict[str, str] | None = None,
        log: build.Log = None,
    ) -> None:
        self.cp = cp
        self._bin_dir = bin_dir
        self.config = config
        self.config_overrides = dict(config_overrides or {})
        self._log = log or (lambda msg: None)
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._webhooks: list[tuple[str, str]] = []
        self.log_path = Path()
        self.webhook_url = ""
        self.probe_url = ""
        self.kubeconfig_path = Path()
        self.startup_seconds = 0.0

    # ---- lifecycle

    def start(self) -> Operator:
        started = time.monotonic()
        assert self.cp.workdir is not None, "start the control plane first"
        bin_dir = self._bin_dir or build.ensure(build.OPERATOR, log=self._log)
        self.config = self.config or config_dir()
        work = self.cp.workdir / "operator"
        work.mkdir(exist_ok=True)
        self.log_path = work / "operator.log"
        try:
            self._install()
            self._spawn(bin_dir, work)
            self._wait_ready(timeout=90)
            self._register_webhooks()
            self._wait_webhooks(timeout=60)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Unregister the webhooks (the API server would fail every write they cover once the
        manager is gone), then stop the manager. Idempotent."""
        with contextlib.suppress(Exception), self.cp.client(timeout=10) as c:
            for collection, name in self._webhooks:
                c.delete(f"{collection}/{name}")
        self._webhooks = []
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> Operator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """The manager's process id (0 before ``start``)."""
        return self._proc.pid if self._proc is not None else 0

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def read_log(self, since: int = 0) -> str:
        """The manager's log from byte offset ``since`` (see ``log_size``)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    # ---- pieces

    def _install(self) -> None:
        assert self.config is not None
        with self.cp.client() as c:
            r = c.post("/api/v1/namespaces", json={"metadata": {"name": SYSTEM_NAMESPACE}})
            if r.status_code not in (201, 409):
                raise OperatorError(f"creating namespace {SYSTEM_NAMESPACE}: {r.text[:500]}")
            for doc in rbac_resources(self.config):
                _apply(c, doc)
            _apply(c, operator_config_map(self.config, self.config_overrides))
            r = c.post(
                f"/api/v1/namespaces/{SYSTEM_NAMESPACE}/serviceaccounts/{SERVICE_ACCOUNT}/token",
                json={
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenRequest",
                    "spec": {"expirationSeconds": 48 * 3600},
                },
            )
            if r.status_code >= 300:
                raise OperatorError(f"TokenRequest for {SERVICE_ACCOUNT}: {r.text[:500]}")
            token = r.json()["status"]["token"]
        assert self.cp.workdir is not None
        self.kubeconfig_path = self.cp.write_kubeconfig(
            self.cp.workdir / "operator" / "operator.kubeconfig", token=token
        )

    def _spawn(self, bin_dir: Path, work: Path) -> None:
        cert = self.cp.ca.issue(
            WEBHOOK_CERT,
            common_name=f"{NAME_PREFIX}webhook-service.{SYSTEM_NAMESPACE}.svc",
            server=True,
            hosts=("127.0.0.1", "localhost"),
        )
        webhook_port, probe_port = free_port(), free_port()
        self.webhook_url = f"https://127.0.0.1:{webhook_port}"
        self.probe_url = f"http://127.0.0.1:{probe_port}"
        # Nothing of the test process's Kubernetes or BubuStack settings leaks into the manager.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("BUBU_", "KUBERNETES_", "OTEL_")) and k != "KUBECONFIG"
        }
        env.update({"ENABLE_WEBHOOKS": "true", "BUBU_TEST_WEBHOOK_PORT": str(webhook_port)})
        args = [
            str(bin_dir / "manager"),
            f"--kubeconfig={self.kubeconfig_path}",
            f"--health-probe-bind-address=127.0.0.1:{probe_port}",
            "--metrics-bind-address=0",
            "--leader-elect=false",
            f"--config-namespace={SYSTEM_NAMESPACE}",
            f"--config-name={CONFIG_NAME}",
            f"--webhook-cert-path={cert.cert_path.parent}",
            f"--webhook-cert-name={cert.cert_path.name}",
            f"--webhook-cert-key={cert.key_path.name}",
        ]
        self._log(f"bubu operator: starting {bin_dir / 'manager'}; log: {self.log_path}")
        self._proc = _spawn(args, self.log_path, env=env)
        self.cp._record_child(self._proc)  # swept with the control plane if we die
        self._finalizer = weakref.finalize(self, _stop_process, self._proc, 5.0)

    def _fail(self, what: str) -> OperatorError:
        return OperatorError(f"{what}; operator log tail:\n{_log_tail(self.log_path, 60)}")

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as c:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise self._fail(f"the operator exited with {self._proc.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if c.get(self.probe_url + "/readyz").status_code == 200:
                        return
                time.sleep(0.1)
        raise self._fail(f"the operator was not ready after {timeout:.0f}s")

    def _register_webhooks(self) -> None:
        assert self.config is not None
        docs = webhook_configurations(self.config, self.webhook_url, self.cp.ca.cert_pem)
        with self.cp.client() as c:
            for doc in docs:
                _apply(c, doc)
                self._webhooks.append((_PATHS[doc["kind"]], doc["metadata"]["name"]))

    def _wait_webhooks(self, timeout: float) -> None:
        """Until the API server calls both configurations: it loads them asynchronously."""
        ns = SYSTEM_NAMESPACE
        trigger = {
            "apiVersion": "runs.bubustack.io/v1alpha1",
            "kind": "StoryTrigger",
            "metadata": {"name": "bubu-webhook-probe"},
            "spec": {
                "storyRef": {"name": "probe"},
                "deliveryIdentity": {"submissionId": "probe", "mode": "none"},
            },
        }
        story = {
            "apiVersion": "bubustack.io/v1alpha1",
            "kind": "Story",
            "metadata": {"name": "bubu-webhook-probe"},
            "spec": {"policy": {}, "steps": [{"name": "s", "type": "condition"}]},
        }
        validating = mutating = False
        last = ""
        deadline = time.monotonic() + timeout
        with self.cp.client() as c:
            while time.monotonic() < deadline:
                if not self.running:
                    raise self._fail("the operator exited while the webhooks were registered")
                if not validating:
                    r = c.post(
                        f"/apis/runs.bubustack.io/v1alpha1/namespaces/{ns}/storytriggers",
                        params={"dryRun": "All"},
                        json=trigger,
                    )
                    last = r.text[:500]
                    message = str(r.json().get("message", ""))
                    validating = 'admission webhook "vstorytrigger' in message
                if not mutating:
                    r = c.post(
                        f"/apis/bubustack.io/v1alpha1/namespaces/{ns}/stories",
                        params={"dryRun": "All"},
                        json=story,
                    )
                    last = r.text[:500]
                    retries = ((r.json().get("spec") or {}).get("policy") or {}).get("retries")
                    mutating = r.status_code == 201 and retries is not None
                if validating and mutating:
                    return
                time.sleep(0.1)
        raise self._fail(f"the API server did not call the operator's webhooks ({last})")


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m tests._controlplane.operator",
        description="Run the control plane and the real operator until Ctrl-C.",
    )
    parser.add_argument("--once", action="store_true", help="start, report timings, stop")
    args = parser.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        build.ensure(build.OPERATOR, log=log)
        cp = ControlPlane(log=log).start()
    except build.GoNotFoundError as exc:
        log(f"error: {exc}")
        return 2
    op = Operator(cp, log=log)
    try:
        op.start()
        log(
            f"control plane ready in {cp.startup_seconds:.2f}s, "
            f"operator ready in {op.startup_seconds:.2f}s"
        )
        log(f"operator log: {op.log_path}")
        print(f"export KUBECONFIG={cp.admin_kubeconfig}", flush=True)
        if args.once:
            return 0
        log("Ctrl-C to stop")
        with contextlib.suppress(KeyboardInterrupt):
            while op.running:
                time.sleep(1)
        return 0 if op.running else 1
    finally:
        if os.environ.get("BUBU_CONTROLPLANE_KEEP_WORKDIR") and op.log_path.exists():
            log(f"operator log kept at {op.log_path}")
        op.stop()
        cp.stop()


if __name__ == "__main__":
    raise SystemExit(main())
