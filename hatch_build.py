"""Hatchling build hook: compile bubu's one optional C extension (the protobuf Struct writer).

``bubu/_transport/_structwire.c`` is a speed-up only: every module works without it (codec falls
back to the pure-Python writer that produces the same bytes). So a failed compile is a warning,
not a build error, and ``BUBU_NO_EXTENSIONS=1`` skips it. The compiler and flags are the ones the
running interpreter was built with (``sysconfig``), as setuptools would use; no setuptools needed.

The shared object is written next to its source, which is what an editable install imports; a
wheel gets it as an artifact and becomes platform-specific.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("bubu/_transport/_structwire.c")


def extension_path(root: Path) -> Path:
    """Where the compiled Struct writer goes: next to its source, with this Python's suffix."""
    suffix = str(sysconfig.get_config_var("EXT_SUFFIX") or ".so")
    return (root / SOURCE).with_name("_structwire" + suffix)


def compile_extension(root: Path) -> Path:
    """Compile the Struct writer in place and return the shared object's path.

    A failed compile removes any older build, so an editable install never keeps running a
    writer that no longer matches its source.

    Raises:
        RuntimeError: the compiler failed or is missing (its output is in the message).
    """
    get = sysconfig.get_config_var
    source = root / SOURCE
    target = extension_path(root)
    command = [
        *shlex.split(str(get("LDSHARED") or "cc -shared")),
        *shlex.split(str(get("CCSHARED") or "-fPIC")),
        "-O2",
        "-Wall",
        "-I",
        sysconfig.get_paths()["include"],
        str(source),
        "-o",
        str(target),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        target.unlink(missing_ok=True)
        raise RuntimeError(f"{command[0]}: {exc}") from exc
    if done.returncode != 0:
        target.unlink(missing_ok=True)
        raise RuntimeError(f"{shlex.join(command)} failed:\n{done.stderr.strip()}")
    return target


class StructWireHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if os.environ.get("BUBU_NO_EXTENSIONS"):
            # Asked for a pure-Python build: an editable install must not keep an older build.
            extension_path(Path(self.root)).unlink(missing_ok=True)
            return
        try:
            target = compile_extension(Path(self.root))
        except RuntimeError as exc:
            self.app.display_warning(f"bubu: building without the C Struct writer: {exc}")
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        build_data["artifacts"].append(str(target.relative_to(self.root)))
