"""Build (once) and cache the Go programs the tests run: the control plane, the operator, peers.

Each artifact is a Go module under ``tests/`` and the packages built from it:

- ``controlplane`` (``tests/controlplane/``): ``kube-apiserver`` and ``etcd``;
- ``operator`` (``tests/operator/``): ``manager``, the BubuStack operator (bobrapet) as released;
- ``interop`` (``tests/interop/``): small programs on the Go SDK's public API (peers, vectors);
- ``s3`` (``tests/s3server/``): ``weed``, the SeaweedFS server (master, volume, filer and S3
  gateway in one process), the real S3-compatible store of the storage tests.

Binaries are built with the local Go toolchain and cached outside the repository at::

    ${BUBU_CONTROLPLANE_CACHE:-~/.cache/bubu/controlplane}/<key>/<binary>

where ``<key>`` is the SHA-256 of the module's ``go.mod``, ``go.sum`` and every ``*.go`` file
(plus the Go version and the build flags), so a change to the pins or the programs triggers a
rebuild and everything else is a cache hit. Concurrent builders (pytest-xdist workers, two
terminals) serialise on one file lock; a build goes to a temporary directory that is renamed
into place only when every binary of the artifact exists.

Run ``python -m tests._controlplane.build`` to build every artifact ahead of a test run (CI
does); ``python -m tests._controlplane.build operator`` builds one. It prints the directories.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: optional progress callback (one line per call)
Log = Callable[[str], None] | None

REPO_ROOT = Path(__file__).resolve().parents[2]
GO_MODULE_DIR = REPO_ROOT / "tests" / "controlplane"

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


def _plain_flags(module_dir: Path) -> list[str]:
    return ["-trimpath", "-buildvcs=false", "-ldflags=-s -w"]


def _kube_flags(module_dir: Path) -> list[str]:
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


@dataclass(frozen=True)
class GoArtifact:
    """A Go module under ``tests/`` and the binaries built from it (name -> package)."""

    name: str
    module_dir: Path
    binaries: Mapping[str, str]
    flags: Callable[[Path], list[str]] = _plain_flags
    env: Mapping[str, str] = field(default_factory=lambda: {"CGO_ENABLED": "0"})
    #: files of ours added to a dependency at build time (see ``_overlay_workspace``):
    #: ``(module path, file path inside that module) -> file relative to module_dir``
    overlay: Mapping[tuple[str, str], str] = field(default_factory=dict)

    @property
    def override_var(self) -> str:
        """``BUBU_<NAME>_BIN_DIR``: use prebuilt binaries from there and skip Go."""
        return f"BUBU_{self.name.upper()}_BIN_DIR"


CONTROLPLANE = GoArtifact(
    "controlplane",
    GO_MODULE_DIR,
    {"kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver", "etcd": "./cmd/etcd"},
    flags=_kube_flags,
)
OPERATOR = GoArtifact(
    "operator",
    REPO_ROOT / "tests" / "operator",
    {"manager": "github.com/bubustack/bobrapet/cmd"},
    # The one addition to the released manager: its webhook port from BUBU_TEST_WEBHOOK_PORT
    # (main.go has no flag for it and every test session on a machine runs its own operator).
    overlay={
        ("github.com/bubustack/bobrapet", "cmd/zz_bubu_test_webhook_port.go"): (
            "_overlay/webhook_port.go"
        )
    },
)


def _commands(module_dir: Path) -> dict[str, str]:
    """Every ``cmd/<name>`` program of a module: adding a peer needs no change here."""
    cmd = module_dir / "cmd"
    if not cmd.is_dir():
        return {}
    return {d.name: f"./cmd/{d.name}" for d in sorted(cmd.iterdir()) if any(d.glob("*.go"))}


INTEROP_DIR = REPO_ROOT / "tests" / "interop"
INTEROP = GoArtifact("interop", INTEROP_DIR, _commands(INTEROP_DIR))
S3 = GoArtifact(
    "s3",
    REPO_ROOT / "tests" / "s3server",
    {"weed": "github.com/seaweedfs/seaweedfs/weed"},
)
#: every artifact, in build order (``python -m tests._controlplane.build`` builds them all)
ARTIFACTS: dict[str, GoArtifact] = {a.name: a for a in (CONTROLPLANE, OPERATOR, INTEROP, S3)}
BINARIES = CONTROLPLANE.binaries


def build_flags(module_dir: Path = GO_MODULE_DIR) -> list[str]:
    """Flags for `go build` of the control plane (part of the cache key)."""
    return _kube_flags(module_dir)


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


def cache_key(
    module_dir: Path = GO_MODULE_DIR, go_version: str = "", artifact: GoArtifact | None = None
) -> str:
    art = artifact or CONTROLPLANE
    h = hashlib.sha256()
    for path in source_files(module_dir):
        rel = path.relative_to(module_dir).as_posix()
        h.update(rel.encode() + b"\0")
        h.update(path.read_bytes() if path.exists() else b"<missing>")
        h.update(b"\0")
    if go_version:
        h.update(b"go:" + go_version.encode())
    h.update(b"flags:" + "\0".join(art.flags(module_dir)).encode())
    if art is not CONTROLPLANE:
        # what is built is part of the key too (the control plane's keys predate this line)
        h.update(b"bin:" + repr(sorted(art.binaries.items())).encode())
    if art.overlay:
        h.update(b"overlay:" + repr(sorted(art.overlay.items())).encode())
    return h.hexdigest()


def _complete(d: Path, artifact: GoArtifact = CONTROLPLANE) -> bool:
    return all(os.access(d / name, os.X_OK) for name in artifact.binaries)


def ensure(artifact: GoArtifact, *, log: Log = None, force: bool = False) -> Path:
    """Return a directory holding every binary of ``artifact``, building it if needed.

    ``BUBU_<NAME>_BIN_DIR`` short-circuits everything (pre-built binaries).
    Raises GoNotFoundError when a build is needed and Go is missing.
    """
    override = os.environ.get(artifact.override_var)
    if override:
        d = Path(override).expanduser()
        if not _complete(d, artifact):
            raise BuildError(
                f"{artifact.override_var}={d} does not contain {', '.join(artifact.binaries)}"
            )
        return d

    go = find_go()
    key = cache_key(artifact.module_dir, _go_version(go), artifact)
    root = cache_root()
    target = root / key
    if _complete(target, artifact) and not force:
        return target

    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(target, artifact) and not force:
            return target
        _build(go, artifact, target, log=log)
    return target


def ensure_binaries(*, log: Log = None, force: bool = False) -> Path:
    """The control plane's directory (``kube-apiserver`` and ``etcd``); see ``ensure``."""
    return ensure(CONTROLPLANE, log=log, force=force)


def module_dir_of(go: str, module: str, cwd: Path, env: Mapping[str, str] | None = None) -> Path:
    """Where the Go module cache holds ``module`` at the version ``cwd``'s go.mod requires."""
    out = subprocess.run(
        [go, "mod", "download", "-json", module],
        cwd=cwd,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        info = json.loads(out.stdout)
    except json.JSONDecodeError:
        info = {}
    if out.returncode != 0 or not info.get("Dir"):
        raise BuildError(
            f"go mod download {module} (in {cwd}) failed: {info.get('Error') or out.stderr.strip()}"
        )
    return Path(info["Dir"])


def _overlay_workspace(go: str, artifact: GoArtifact, env: Mapping[str, str], tmp: Path) -> Path:
    """A throw-away copy of the artifact's module in which each overlaid dependency is
    ``replace``d by a copy of itself plus our files, and the directory to build in.

    (``go build -overlay`` would be simpler, but Go refuses to overlay files in the module
    cache.) Only the copied modules' packages compile again; the rest comes from GOCACHE.
    """
    workspace = tmp / ".src"
    main = workspace / "main"
    shutil.copytree(artifact.module_dir, main)
    replaced: dict[str, Path] = {}
    for module, _ in artifact.overlay:
        if module in replaced:
            continue
        copy = workspace / "replaced" / module.replace("/", "_")
        shutil.copytree(module_dir_of(go, module, artifact.module_dir, env), copy)
        for d, _dirs, _files in os.walk(copy):  # the module cache is read-only
            os.chmod(d, 0o755)
        replaced[module] = copy
    for (module, rel), ours in artifact.overlay.items():
        target = replaced[module] / rel
        shutil.copyfile(artifact.module_dir / ours, target)
    with open(main / "go.mod", "a") as f:
        for module, copy in replaced.items():
            f.write(f"\nreplace {module} => {copy}\n")
    return main


def _build(go: str, artifact: GoArtifact, target: Path, *, log: Log = None) -> None:
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    log_path = target.parent / f"{target.name}.build.log"
    env = dict(os.environ)
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=mod").strip()
    for k, v in artifact.env.items():
        env.setdefault(k, v)
    started = time.monotonic()
    try:
        workdir = artifact.module_dir
        if artifact.overlay:
            workdir = _overlay_workspace(go, artifact, env, tmp)
        with open(log_path, "w") as logf:
            for name, pkg in artifact.binaries.items():
                say(f"bubu {artifact.name}: building {name} ({pkg}); log: {log_path}")
                cmd = [
                    go,
                    "build",
                    *artifact.flags(artifact.module_dir),
                    "-o",
                    str(tmp / name),
                    pkg,
                ]
                logf.write(f"$ (cd {workdir} && {' '.join(cmd)})\n")
                logf.flush()
                rc = subprocess.run(
                    cmd,
                    cwd=workdir,
                    env=env,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    check=False,
                ).returncode
                if rc != 0:
                    raise BuildError(f"building {name} failed (exit {rc}); see {log_path}")
            logf.write(f"built in {time.monotonic() - started:.1f}s\n")
        shutil.rmtree(tmp / ".src", ignore_errors=True)
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
        say(f"bubu {artifact.name}: built in {time.monotonic() - started:.0f}s -> {target}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "artifacts",
        nargs="*",
        metavar="ARTIFACT",
        help=f"what to build (default: {', '.join(ARTIFACTS)})",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache is warm")
    parser.add_argument("--print-key", action="store_true", help="print the cache keys and exit")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.artifacts) - set(ARTIFACTS))
    if unknown:
        parser.error(f"unknown artifact {', '.join(unknown)} (choose from {', '.join(ARTIFACTS)})")
    chosen = [ARTIFACTS[n] for n in (args.artifacts or ARTIFACTS)]
    try:
        go = find_go()
        if args.print_key:
            for art in chosen:
                print(art.name, cache_key(art.module_dir, _go_version(go), art))
            return 0
        for art in chosen:
            started = time.monotonic()
            d = ensure(art, force=args.force)
            print(f"{art.name}: {d}  ({time.monotonic() - started:.1f}s)", file=sys.stderr)
            print(d)
    except GoNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
