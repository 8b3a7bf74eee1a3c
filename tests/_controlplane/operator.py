"""Opt-in: run the real bobrapet operator (controllers only) against the test control plane.

The operator module ``github.com/bubustack/bobrapet`` is not served by the Go
module proxy (403 "This module version is not available"), so the default suite
uses the stand-in controllers in ``tests/_standins/``. When a bobrapet build is
at hand, tests can use the real controllers instead:

* ``BUBU_OPERATOR_BIN=/path/to/manager`` runs that binary, or
* ``BUBU_OPERATOR_SRC=/path/to/bobrapet`` (a source checkout) builds ``./cmd``
  once and caches it next to the control-plane binaries.

The operator runs with ``ENABLE_WEBHOOKS=false`` (no admission webhooks: a bare
API server cannot call back into it) and the admin kubeconfig.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from . import build
from .server import ControlPlane, ControlPlaneError, _log_tail, _spawn, _stop_process, free_port

OPERATOR_MISSING = (
    "the real bobrapet operator is opt-in: set BUBU_OPERATOR_BIN (a built manager) or "
    "BUBU_OPERATOR_SRC (a bobrapet checkout); the Go module proxy does not serve it"
)


def operator_binary(*, log: build.Log = None) -> Path | None:
    """The operator binary from the environment, building it from source if asked; else None."""
    binary = os.environ.get("BUBU_OPERATOR_BIN")
    if binary:
        p = Path(binary).expanduser()
        if not os.access(p, os.X_OK):
            raise ControlPlaneError(f"BUBU_OPERATOR_BIN={p} is not an executable")
        return p
    src = os.environ.get("BUBU_OPERATOR_SRC")
    if not src:
        return None
    return _build_from_source(Path(src).expanduser().resolve(), log=log)


def _source_key(src: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(src.rglob("*")):
        if path.suffix == ".go" or path.name in ("go.mod", "go.sum"):
            if "/.git/" in str(path) or not path.is_file():
                continue
            h.update(path.relative_to(src).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _build_from_source(src: Path, *, log: build.Log = None) -> Path:
    go = build.find_go()
    target = build.cache_root() / "operator" / _source_key(src)
    binary = target / "manager"
    if os.access(binary, os.X_OK):
        return binary
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    log_path = target.parent / f"{target.name}.build.log"
    (log or (lambda m: None))(
        f"bubu controlplane: building bobrapet operator from {src}; log: {log_path}"
    )
    try:
        with open(log_path, "w") as logf:
            rc = subprocess.run(
                [go, "build", "-trimpath", "-buildvcs=false", "-o", str(tmp / "manager"), "./cmd"],
                cwd=src,
                env={**os.environ, "CGO_ENABLED": "0"},
                stdout=logf,
                stderr=subprocess.STDOUT,
                check=False,
            ).returncode
        if rc != 0:
            raise ControlPlaneError(f"building the operator failed (exit {rc}); see {log_path}")
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return binary


class Operator:
    """The bobrapet manager process, started against ``cp`` (stop() is idempotent)."""

    def __init__(self, cp: ControlPlane, binary: Path) -> None:
        self.cp = cp
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None
        assert cp.workdir is not None
        self.log_path = cp.workdir / f"operator-{time.monotonic_ns()}.log"

    def start(self, timeout: float = 60.0) -> Operator:
        with self.cp.client() as c:  # its config namespace; the ConfigMap itself is optional
            c.post("/api/v1/namespaces", json={"metadata": {"name": "bobrapet-system"}})
        probe = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cp.admin_kubeconfig),
            "ENABLE_WEBHOOKS": "false",
            "POD_NAMESPACE": "bobrapet-system",
        }
        self.proc = _spawn(
            [
                str(self.binary),
                "--metrics-bind-address=0",
                f"--health-probe-bind-address=127.0.0.1:{probe}",
            ],
            self.log_path,
            env=env,
        )
        self.cp._record_child(self.proc)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                with contextlib.suppress(httpx.HTTPError):
                    if c.get(f"http://127.0.0.1:{probe}/readyz").status_code == 200:
                        return self
                time.sleep(0.1)
        self.stop()
        raise ControlPlaneError(
            f"operator did not become ready; log tail:\n{_log_tail(self.log_path)}"
        )

    def stop(self) -> None:
        _stop_process(self.proc, grace=5.0)

    def __enter__(self) -> Operator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
