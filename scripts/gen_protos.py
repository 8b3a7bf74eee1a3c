"""Regenerate ``bubu/_gen`` from ``protos/`` (docs/decisions/0001-protobuf-runtime.md).

Runs protoc from **grpcio-tools 1.85.1** (libprotoc 35.1; pinned in pyproject's ``dev`` extra)
with the official Python generator (``--python_out`` + ``--pyi_out``) and grpclib's own plugin
(``--grpclib_python_out``, shipped by grpclib as ``protoc-gen-grpclib_python``), then rewrites
the generated absolute imports (``from transport.v1 import ...``, ``import buf.validate...``)
into the ``bubu._gen`` namespace so the generated packages never need to be top-level.

Usage::

    python scripts/gen_protos.py           # regenerate into bubu/_gen
    python scripts/gen_protos.py --check   # regenerate into a temp dir, fail on any difference
    nox -s protos [-- --check]

The generated code declares the protobuf runtime it needs (``ValidateProtobufRuntimeVersion``):
libprotoc 35.1 output requires ``protobuf >= 7.35.1``.
"""

from __future__ import annotations

import argparse
import difflib
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
GEN_ROOT = ROOT / "bubu" / "_gen"
GRPCIO_TOOLS_VERSION = "1.85.1"

# Top-level proto packages that live under bubu._gen (google.* comes from protobuf itself).
_LOCAL_PACKAGES = ("transport", "buf")

_INIT_DOC = '"""Generated protobuf and grpclib code for bubu. Do not edit.\n\n'
_ROOT_INIT = (
    _INIT_DOC
    + "Regenerate from protos/ with ``python scripts/gen_protos.py`` (``nox -s protos``);\n"
    "``--check`` fails when this tree differs from what protoc produces.\n"
    '"""\n'
)
_PKG_INIT = '"""Generated package (bubu._gen). Do not edit."""\n'

_PACKAGES_RE = "|".join(_LOCAL_PACKAGES)
_FROM_RE = re.compile(rf"^from ({_PACKAGES_RE})\.", re.MULTILINE)
# Dotted module references in grpclib output (imports and type annotations), but never the
# '/transport.v1.Service/Method' route strings, which are preceded by '/' and name no _pb2.
_DOTTED_RE = re.compile(rf"(?<![\w./])((?:{_PACKAGES_RE})(?:\.\w+)*\.\w+_pb2)\b")


def _protos() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def _rewrite(text: str) -> str:
    text = _FROM_RE.sub(r"from bubu._gen.\1.", text)
    return _DOTTED_RE.sub(r"bubu._gen.\1", text)


def _check_tools() -> None:
    from importlib.metadata import version

    found = version("grpcio-tools")
    if found != GRPCIO_TOOLS_VERSION:
        sys.exit(
            f"gen_protos: grpcio-tools {GRPCIO_TOOLS_VERSION} is pinned, found {found}; "
            f'install it with: pip install "grpcio-tools=={GRPCIO_TOOLS_VERSION}"'
        )


def _grpclib_plugin() -> str:
    # grpclib installs the plugin as a console script next to the interpreter; fall back to PATH.
    beside = Path(sys.executable).parent / "protoc-gen-grpclib_python"
    found = str(beside) if beside.exists() else shutil.which("protoc-gen-grpclib_python")
    if not found:
        sys.exit(
            "gen_protos: protoc-gen-grpclib_python not found; install grpclib (pip install grpclib)"
        )
    return found


def generate(out: Path) -> None:
    """Run protoc into ``out`` and post-process the tree into the ``bubu._gen`` layout."""
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    protos = _protos()
    plugin = _grpclib_plugin()
    args = [
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-grpclib_python={plugin}",
        f"-I{PROTO_ROOT}",
        # google/protobuf/*.proto ship inside grpcio-tools.
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpclib_python_out={out}",
        *(str(p) for p in protos),
    ]
    rc = protoc.main(args)
    if rc != 0:
        sys.exit(f"gen_protos: protoc failed with exit code {rc}")

    for path in sorted(out.rglob("*")):
        if not path.is_file():
            continue
        text = path.read_text()
        # grpclib writes a *_grpc.py for every file; one without a service is an empty stub.
        if path.name.endswith("_grpc.py") and "class " not in text:
            path.unlink()
            continue
        path.write_text(_rewrite(text))

    (out / "__init__.py").write_text(_ROOT_INIT)
    for directory in sorted(p for p in out.rglob("*") if p.is_dir()):
        if directory.name == "__pycache__":
            continue
        init = directory / "__init__.py"
        if not init.exists():
            init.write_text(_PKG_INIT)


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def check() -> int:
    """Regenerate into a temporary directory and report any difference with ``bubu/_gen``."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp) / "_gen"
        generate(fresh_root)
        fresh, committed = _tree(fresh_root), _tree(GEN_ROOT) if GEN_ROOT.exists() else {}
    if fresh == committed:
        print("gen_protos: bubu/_gen is up to date")
        return 0
    for name in sorted(set(fresh) | set(committed)):
        a, b = committed.get(name), fresh.get(name)
        if a == b:
            continue
        if a is None:
            print(f"missing from bubu/_gen: {name}")
        elif b is None:
            print(f"stale file in bubu/_gen: {name}")
        else:
            sys.stdout.writelines(
                difflib.unified_diff(
                    a.splitlines(True), b.splitlines(True), f"committed/{name}", f"fresh/{name}"
                )
            )
    print("gen_protos: bubu/_gen is out of date; run `python scripts/gen_protos.py`")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if bubu/_gen is stale")
    ns = parser.parse_args(argv)
    _check_tools()
    if ns.check:
        return check()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "_gen"
        generate(fresh)
        shutil.rmtree(GEN_ROOT, ignore_errors=True)
        shutil.copytree(fresh, GEN_ROOT)
    print(f"gen_protos: wrote {len(_tree(GEN_ROOT))} files to {GEN_ROOT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
