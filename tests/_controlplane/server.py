"""Run a real etcd + kube-apiserver on loopback for the integration tests.

``ControlPlane`` starts both processes in their own process groups on free
loopback ports, with:

* TLS everywhere on the API server, signed by a throw-away CA (``pki.py``);
* an admin identity: a client certificate with ``O=system:masters``;
* ``--authorization-mode=RBAC``, so ServiceAccounts get only what their Roles grant;
* ServiceAccount token issuing (TokenRequest API) with an EC signing key;
* all BubuStack CRDs installed and waited on until ``Established``.

The processes stop on ``stop()``, on interpreter exit and garbage collection
(``weakref.finalize``, which registers with ``atexit``), and if this Python
process dies abruptly (the children are started with ``PR_SET_PDEATHSIG``).
A later start also sweeps work directories left behind by dead owners and
kills their recorded processes.

``python -m tests._controlplane.server`` runs one until Ctrl-C and prints the
admin kubeconfig path.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import httpx
import yaml

from . import build, pki

REPO_ROOT = build.REPO_ROOT
# libyaml parses the 1.2 MB of CRDs in ~0.2 s; the pure-Python loader takes ~2 s.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
WORKDIR_PREFIX = "bubu-controlplane-"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
CRD_API = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


class ControlPlaneError(RuntimeError):
    """The control plane failed to start; the message carries the log tail."""


def crds_dir() -> Path:
    """Where the CRD YAML files live: ``$BUBU_CRDS_DIR`` or ``<repo>/../shared/crds``."""
    env = os.environ.get("BUBU_CRDS_DIR")
    return (
        Path(env).expanduser().resolve()
        if env
        else (REPO_ROOT.parent / "shared" / "crds").resolve()
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --------------------------------------------------------------------------- processes

_PR_SET_PDEATHSIG = 1


_prctl: Any
try:  # resolved in the parent: the child only calls a function pointer (no dlopen after fork)
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover - non-Linux
    _prctl = None


def _child_setup() -> None:  # runs in the child between fork and exec
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _spawn(
    args: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    # PDEATHSIG fires when the *thread* that forked dies; only use it from the main thread.
    preexec = _child_setup if threading.current_thread() is threading.main_thread() else None
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: killpg reaches everything it forks
            preexec_fn=preexec,  # noqa: PLW1509 - only prctl(2), resolved before fork
            env=env,
            close_fds=True,
        )


def _stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 3.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_workdirs(base: Path | None = None) -> None:
    """Kill processes and remove work dirs left by control planes whose owner died."""
    base = base or Path(tempfile.gettempdir())
    for d in base.glob(WORKDIR_PREFIX + "*"):
        try:
            owner = int((d / "owner.pid").read_text().strip())
        except (OSError, ValueError):
            continue
        if _pid_alive(owner):
            continue
        with contextlib.suppress(OSError, ValueError):
            for line in (d / "children.pid").read_text().split():
                pid = int(line)
                # Only kill it if it is still one of ours (its command line names this work dir).
                with contextlib.suppress(OSError):
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if str(d).encode() in cmdline:
                        os.killpg(pid, signal.SIGKILL)
        shutil.rmtree(d, ignore_errors=True)


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


# --------------------------------------------------------------------------- kubeconfig


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_path: Path | None = None,
    client_cert: pki.CertPair | None = None,
    token: str | None = None,
    namespace: str | None = None,
    user: str = "bubu-test",
) -> Path:
    """Write a single-context kubeconfig (mode 0600) and return its path."""
    cluster: dict[str, Any] = {"server": server}
    if ca_path is not None and server.startswith("https://"):
        cluster["certificate-authority"] = str(ca_path)
    user_entry: dict[str, Any] = {}
    if client_cert is not None:
        user_entry["client-certificate"] = str(client_cert.cert_path)
        user_entry["client-key"] = str(client_cert.key_path)
    if token is not None:
        user_entry["token"] = token
    context: dict[str, Any] = {"cluster": "bubu-test", "user": user}
    if namespace:
        context["namespace"] = namespace
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "bubu-test", "cluster": cluster}],
        "users": [{"name": user, "user": user_entry}],
        "contexts": [{"name": "bubu-test", "context": context}],
        "current-context": "bubu-test",
        "preferences": {},
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    return path


# --------------------------------------------------------------------------- control plane


class ControlPlane:
    """etcd + kube-apiserver with the BubuStack CRDs installed.

    Attributes once started: ``url`` (``https://127.0.0.1:<port>``),
    ``admin_kubeconfig`` / ``kubeconfig_path`` (admin, ``system:masters``),
    ``ca`` (the ``pki.CA``; ``ca.cert_path`` is the trust anchor), ``ca_path``,
    ``admin_cert`` (client cert pair), ``workdir``, ``etcd_url``, ``crds``
    (list of installed CRD names), ``startup_seconds``.
    """

    def __init__(
        self, *, bin_dir: Path | None = None, crds: Path | None = None, log: build.Log = None
    ) -> None:
        self._bin_dir = bin_dir
        self._crds_dir = crds
        self._log = log or (lambda msg: None)
        self._etcd: subprocess.Popen[bytes] | None = None
        self._apiserver: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._procs: list[subprocess.Popen[bytes]] = []
        self.workdir: Path | None = None
        self.url = ""
        self.etcd_url = ""
        self.crds: list[str] = []
        self.startup_seconds = 0.0

    # ---- lifecycle

    def start(self) -> ControlPlane:
        started = time.monotonic()
        sweep_stale_workdirs()
        crd_dir = self._crds_dir or crds_dir()
        crd_files = sorted(crd_dir.glob("*.yaml")) if crd_dir.is_dir() else []
        if not crd_files:
            raise ControlPlaneError(
                f"no CRD files in {crd_dir}; set BUBU_CRDS_DIR "
                "or put shared/crds beside the repository"
            )
        bin_dir = self._bin_dir or build.ensure_binaries(log=self._log)

        self.workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        (self.workdir / "owner.pid").write_text(str(os.getpid()))
        # Runs on stop(), when this object is collected, or at interpreter exit (finalize
        # registers with atexit itself). It must not reference self: it gets the shared list.
        self._finalizer = weakref.finalize(self, _cleanup, self._procs, self.workdir)
        assert self._finalizer.atexit
        try:
            self._make_pki()
            self._start_etcd(bin_dir)
            self._start_apiserver(bin_dir)
            self.install_crds(crd_files)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Stop both processes and remove the work directory. Idempotent."""
        if self._finalizer is not None:
            self._finalizer()  # runs _cleanup once

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record_child(self, proc: subprocess.Popen[bytes]) -> None:
        assert self.workdir is not None
        self._procs.append(proc)
        with open(self.workdir / "children.pid", "a") as f:
            f.write(f"{proc.pid}\n")

    # ---- pieces

    def _make_pki(self) -> None:
        assert self.workdir is not None
        pki_dir = self.workdir / "pki"
        self.ca = pki.CA(pki_dir)
        self.ca_path = self.ca.cert_path
        self.serving_cert = self.ca.issue(
            "apiserver",
            common_name="kube-apiserver",
            server=True,
            hosts=(
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
            ),
        )
        self.admin_cert = self.ca.issue(
            "admin", common_name="bubu-admin", organizations=("system:masters",), client=True
        )
        self.sa_keys = pki.service_account_keys(pki_dir)

    def _start_etcd(self, bin_dir: Path) -> None:
        assert self.workdir is not None
        log = self.workdir / "etcd.log"
        for _attempt in range(3):
            client_port, peer_port = free_port(), free_port()
            self.etcd_url = f"http://127.0.0.1:{client_port}"
            self._etcd = _spawn(
                [
                    str(bin_dir / "etcd"),
                    f"--data-dir={self.workdir / 'etcd'}",
                    f"--listen-client-urls={self.etcd_url}",
                    f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                    "--log-level=warn",
                ],
                log,
            )
            self._record_child(self._etcd)
            if self._wait_etcd(timeout=30):
                return
            _stop_process(self._etcd)
            shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
        raise ControlPlaneError(f"etcd did not start; log tail:\n{_log_tail(log)}")

    def _wait_etcd(self, timeout: float) -> bool:
        assert self._etcd is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as c:
            while time.monotonic() < deadline:
                if self._etcd.poll() is not None:
                    return False
                with contextlib.suppress(httpx.HTTPError):
                    r = c.get(self.etcd_url + "/health")
                    if r.status_code == 200 and json.loads(r.text).get("health") == "true":
                        return True
                time.sleep(0.05)
        return False

    def _start_apiserver(self, bin_dir: Path) -> None:
        assert self.workdir is not None
        log = self.workdir / "kube-apiserver.log"
        for _attempt in range(3):
            port = free_port()
            self.url = f"https://127.0.0.1:{port}"
            args = [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={self.serving_cert.cert_path}",
                f"--tls-private-key-file={self.serving_cert.key_path}",
                f"--client-ca-file={self.ca_path}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={SA_ISSUER}",
                f"--service-account-key-file={self.sa_keys.cert_path}",
                f"--service-account-signing-key-file={self.sa_keys.key_path}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--disable-admission-plugins=ServiceAccount",
                "--enable-priority-and-fairness=false",
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ]
            self._apiserver = _spawn(args, log)
            self._record_child(self._apiserver)
            if self._wait_ready(timeout=90):
                self.admin_kubeconfig = write_kubeconfig(
                    self.workdir / "admin.kubeconfig",
                    server=self.url,
                    ca_path=self.ca_path,
                    client_cert=self.admin_cert,
                    user="bubu-admin",
                )
                return
            if self._apiserver.poll() is None or "address already in use" not in _log_tail(
                log, 200
            ):
                break  # a real failure, not a port race
        raise ControlPlaneError(f"kube-apiserver did not become ready; log tail:\n{_log_tail(log)}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self._apiserver is not None
        deadline = time.monotonic() + timeout
        with self.client(timeout=2.0) as c:
            while time.monotonic() < deadline:
                if self._apiserver.poll() is not None:
                    return False
                with contextlib.suppress(httpx.HTTPError):
                    if c.get("/readyz").status_code == 200:
                        return True
                time.sleep(0.1)
        return False

    # ---- clients

    @property
    def kubeconfig_path(self) -> Path:
        return self.admin_kubeconfig

    def ssl_context(self, *, admin: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        if admin:
            ctx.load_cert_chain(str(self.admin_cert.cert_path), str(self.admin_cert.key_path))
        return ctx

    def client(self, *, token: str | None = None, timeout: float = 30.0) -> httpx.Client:
        """A sync httpx client for the API server: admin unless ``token`` is given."""
        headers = {"Authorization": f"Bearer {token}"} if token else None
        return httpx.Client(
            base_url=self.url,
            verify=self.ssl_context(admin=token is None),
            headers=headers,
            timeout=timeout,
        )

    def async_client(self, *, token: str | None = None, timeout: float = 30.0) -> httpx.AsyncClient:
        """An async httpx client for the API server: admin unless ``token`` is given."""
        headers = {"Authorization": f"Bearer {token}"} if token else None
        return httpx.AsyncClient(
            base_url=self.url,
            verify=self.ssl_context(admin=token is None),
            headers=headers,
            timeout=timeout,
        )

    def write_kubeconfig(
        self,
        path: Path,
        *,
        token: str | None = None,
        namespace: str | None = None,
        server: str | None = None,
    ) -> Path:
        """Kubeconfig for this API server: admin cert unless ``token`` is given."""
        return write_kubeconfig(
            path,
            server=server or self.url,
            ca_path=self.ca_path,
            client_cert=None if token else self.admin_cert,
            token=token,
            namespace=namespace,
            user="bubu-token" if token else "bubu-admin",
        )

    # ---- CRDs

    def install_crds(self, files: list[Path], timeout: float = 60.0) -> None:
        docs = []
        for f in files:
            docs += [
                d
                for d in yaml.load_all(f.read_text(), Loader=_YAML_LOADER)
                if d and d.get("kind") == "CustomResourceDefinition"
            ]
        with self.client() as c:
            for doc in docs:
                r = c.post(CRD_API, json=doc)
                if r.status_code == 409:  # already there (re-install): replace it
                    cur = c.get(f"{CRD_API}/{doc['metadata']['name']}").json()
                    doc["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
                    r = c.put(f"{CRD_API}/{doc['metadata']['name']}", json=doc)
                if r.status_code >= 300:
                    raise ControlPlaneError(
                        f"installing CRD {doc['metadata']['name']}: {r.status_code} {r.text[:2000]}"
                    )
            pending = {d["metadata"]["name"]: d for d in docs}
            deadline = time.monotonic() + timeout
            while pending:
                for item in c.get(CRD_API).json().get("items") or []:
                    name = item["metadata"]["name"]
                    conds = {
                        cond["type"]: cond["status"]
                        for cond in (item.get("status") or {}).get("conditions") or []
                    }
                    established = conds.get("Established") == "True"
                    if name in pending and established and conds.get("NamesAccepted") == "True":
                        self._wait_served(c, pending.pop(name), deadline)
                if pending:
                    if time.monotonic() > deadline:
                        raise ControlPlaneError(
                            f"CRDs not Established after {timeout}s: {sorted(pending)}"
                        )
                    time.sleep(0.05)
        self.crds = sorted(d["metadata"]["name"] for d in docs)

    @staticmethod
    def _wait_served(c: httpx.Client, doc: dict[str, Any], deadline: float) -> None:
        spec = doc["spec"]
        version = next(v["name"] for v in spec["versions"] if v.get("served"))
        path = f"/apis/{spec['group']}/{version}/{spec['names']['plural']}?limit=1"
        while True:
            if c.get(path).status_code == 200:
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"{path} not served")
            time.sleep(0.05)


def _cleanup(procs: list[subprocess.Popen[bytes]], workdir: Path) -> None:
    # apiserver first, then etcd (reverse start order)
    for proc in reversed(procs):
        with contextlib.suppress(Exception):
            _stop_process(proc)
    if os.environ.get("BUBU_CONTROLPLANE_KEEP_WORKDIR"):
        return
    shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m tests._controlplane.server",
        description="Run etcd + kube-apiserver with the BubuStack CRDs until Ctrl-C.",
    )
    parser.add_argument(
        "--crds",
        type=Path,
        default=None,
        help="CRD directory (default: $BUBU_CRDS_DIR or ../shared/crds)",
    )
    parser.add_argument(
        "--once", action="store_true", help="start, report timings, stop (benchmark)"
    )
    args = parser.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    # SIGTERM -> SystemExit so the normal cleanup path runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Ctrl-C -> KeyboardInterrupt even when started from a shell that ignores SIGINT (`cmd &`).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    t0 = time.monotonic()
    try:
        cp = ControlPlane(crds=args.crds, log=log).start()
    except build.GoNotFoundError as exc:
        log(f"error: {exc}")
        return 2
    try:
        log(
            f"control plane ready in {time.monotonic() - t0:.2f}s ({len(cp.crds)} CRDs Established)"
        )
        log(f"API server: {cp.url}")
        print(f"export KUBECONFIG={cp.admin_kubeconfig}", flush=True)
        if args.once:
            return 0
        log("Ctrl-C to stop")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
        return 0
    finally:
        t1 = time.monotonic()
        cp.stop()
        log(f"stopped in {time.monotonic() - t1:.2f}s")


if __name__ == "__main__":
    raise SystemExit(main())
