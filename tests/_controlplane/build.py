"""Build (once) and cache the control-plane binaries: kube-apiserver and etcd.

The Go module in ``tests/controlplane/`` pins ``k8s.io/kubernetes`` and etcd.
Binaries are built from it with the local Go toolchain and cached outside the
repository at::

    ${BUBU_CONTROLPLANE_CACHE:-~/.cache/bubu/controlplane}/<key>/{kube-apiserver,etcd}

where ``<key>`` is the SHA-256 of ``go.mod``, ``go.sum`` and every ``*.go`` file of
that module (plus the Go version), so a change to the pins triggers a rebuild and
everything else is a cache hit. Concurrent builders (pytest-xdist workers, two
terminals) serialise on a file lock; the build goes to a temporary directory
that is renamed into place only when both binaries exist.

Run ``python -m tests._controlplane.build`` to build ahead of a test run; it
prints the directory holding the binaries.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

#: optional progress callback (one line per call)
Log = Callable[[str], None] | None

REPO_ROOT = Path(__file__).resolve().parents[2]
GO_MODULE_DIR = REPO_ROOT / "tests" / "controlplane"

BINARIES = {
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "etcd": "./cmd/etcd",
}
# The Kubernetes version pinned in go.mod; stamped into the binary so /version
# reports it (a plain `go build` would say v0.0.0-master).
_VERSION_PKG = "k8s.io/component-base/version"


def _kube_version(module_dir: Path = GO_MODULE_DIR) -> str:
    for line in (module_dir / "go.mod").read_text().splitlines():
        parts = line.split()
        if (
            len(parts) >= 2
            and parts[0] in ("k8s.io/kubernetes", "require")
            and parts[-2] == "k8s.io/kubernetes"
        ):
            return parts[-1]
        if len(parts) == 2 and parts[0] == "k8s.io/kubernetes":
            return parts[1]
    return "v0.0.0"


def build_flags(module_dir: Path = GO_MODULE_DIR) -> list[str]:
    """Flags for `go build` (part of the cache key)."""
    v = _kube_version(module_dir)
    major, minor = v.lstrip("v").split(".")[:2]
    x = {
        "gitVersion": v,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    ldflags = "-s -w " + " ".join(f"-X {_VERSION_PKG}.{k}={val}" for k, val in x.items())
    return ["-trimpath", "-buildvcs=false", f"-ldflags={ldflags}"]


class GoNotFoundError(RuntimeError):
    """Raised when no ``go`` toolchain is on PATH (the caller should skip)."""


class BuildError(RuntimeError):
    """Raised when ``go build`` fails; the message names the log file."""


def cache_root() -> Path:
    env = os.environ.get("BUBU_CONTROLPLANE_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "bubu" / "controlplane"


def find_go() -> str:
    go = shutil.which("go")
    if go is None:
        raise GoNotFoundError(
            "integration tests need Go (go not found on PATH) to build kube-apiserver"
        )
    return go


def _go_version(go: str) -> str:
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


def source_files(module_dir: Path = GO_MODULE_DIR) -> list[Path]:
    files = [module_dir / "go.mod", module_dir / "go.sum"]
    files += sorted(p for p in module_dir.rglob("*.go") if p.is_file())
    return files


def cache_key(module_dir: Path = GO_MODULE_DIR, go_version: str = "") -> str:
    h = hashlib.sha256()
    for path in source_files(module_dir):
        rel = path.relative_to(module_dir).as_posix()
        h.update(rel.encode() + b"\0")
        h.update(path.read_bytes() if path.exists() else b"<missing>")
        h.update(b"\0")
    if go_version:
        h.update(b"go:" + go_version.encode())
    h.update(b"flags:" + "\0".join(build_flags(module_dir)).encode())
    return h.hexdigest()


def _complete(d: Path) -> bool:
    return all(os.access(d / name, os.X_OK) for name in BINARIES)


def ensure_binaries(*, log: Log = None, force: bool = False) -> Path:
    """Return a directory holding ``kube-apiserver`` and ``etcd``, building if needed.

    ``BUBU_CONTROLPLANE_BIN_DIR`` short-circuits everything (pre-built binaries).
    Raises GoNotFoundError when a build is needed and Go is missing.
    """
    override = os.environ.get("BUBU_CONTROLPLANE_BIN_DIR")
    if override:
        d = Path(override).expanduser()
        if not _complete(d):
            raise BuildError(
                f"BUBU_CONTROLPLANE_BIN_DIR={d} does not contain {', '.join(BINARIES)}"
            )
        return d

    go = find_go()
    key = cache_key(GO_MODULE_DIR, _go_version(go))
    root = cache_root()
    target = root / key
    if _complete(target) and not force:
        return target

    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(target) and not force:
            return target
        _build(go, target, log=log)
    return target


def _build(go: str, target: Path, *, log: Log = None) -> None:
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    log_path = target.parent / f"{target.name}.build.log"
    env = dict(os.environ)
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=mod").strip()
    env.setdefault("CGO_ENABLED", "0")
    started = time.monotonic()
    try:
        with open(log_path, "w") as logf:
            for name, pkg in BINARIES.items():
                say(f"bubu controlplane: building {name} ({pkg}); log: {log_path}")
                cmd = [go, "build", *build_flags(), "-o", str(tmp / name), pkg]
                logf.write(f"$ (cd {GO_MODULE_DIR} && {' '.join(cmd)})\n")
                logf.flush()
                rc = subprocess.run(
                    cmd,
                    cwd=GO_MODULE_DIR,
                    env=env,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    check=False,
                ).returncode
                if rc != 0:
                    raise BuildError(f"building {name} failed (exit {rc}); see {log_path}")
            logf.write(f"built in {time.monotonic() - started:.1f}s\n")
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
        say(f"bubu controlplane: built in {time.monotonic() - started:.0f}s -> {target}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache is warm")
    parser.add_argument("--print-key", action="store_true", help="print the cache key and exit")
    args = parser.parse_args(argv)
    if args.print_key:
        print(cache_key(GO_MODULE_DIR, _go_version(find_go())))
        return 0
    try:
        started = time.monotonic()
        d = ensure_binaries(force=args.force)
    except GoNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{d}  ({time.monotonic() - started:.1f}s)", file=sys.stderr)
    print(d)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
