"""hatch_build.py: the optional C Struct writer is compiled, or the build stays pure Python."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
try:
    import hatch_build
finally:
    sys.path.remove(str(ROOT))


def _tree(tmp_path: Path, source: str | None = None) -> Path:
    target = tmp_path / hatch_build.SOURCE
    target.parent.mkdir(parents=True)
    if source is None:
        shutil.copy(ROOT / hatch_build.SOURCE, target)
    else:
        target.write_text(source)
    return tmp_path


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("_structwire", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compile_extension_builds_a_working_writer(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    built = hatch_build.compile_extension(root)
    assert built == hatch_build.extension_path(root) and built.is_file()
    from bubu._transport import codec

    doc = {"a": [1, "x", {"b": None, "c": True}], "f": 1.5}
    buf = bytearray()
    codec._write_struct(buf, doc)
    assert _load(built).struct_bytes(doc) == bytes(buf)


def test_a_failed_compile_names_the_error_and_removes_an_older_build(tmp_path: Path) -> None:
    root = _tree(tmp_path, "this is not C;\n")
    stale = hatch_build.extension_path(root)
    stale.write_bytes(b"an older build")
    with pytest.raises(RuntimeError, match="failed") as caught:
        hatch_build.compile_extension(root)
    assert "_structwire.c" in str(caught.value)  # the compiler's own message is kept
    assert not stale.exists()


class _App:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def display_warning(self, message: str) -> None:
        self.warnings.append(message)


def _hook(root: Path) -> tuple[Any, _App]:
    app = _App()
    # root, config, build_config, metadata, directory, target_name, app (hatchling's order);
    # initialize() reads only the root and the app.
    hook = hatch_build.StructWireHook(str(root), {}, None, None, str(root / "dist"), "wheel", app)
    return hook, app


def _build_data() -> dict[str, Any]:
    return {"artifacts": [], "pure_python": True, "infer_tag": False}


def test_the_hook_marks_the_wheel_platform_specific_and_ships_the_object(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    hook, app = _hook(root)
    data = _build_data()
    hook.initialize("standard", data)
    assert app.warnings == []
    assert data["pure_python"] is False and data["infer_tag"] is True
    assert data["artifacts"] == [str(hatch_build.extension_path(root).relative_to(root))]


def test_without_a_compiler_the_hook_warns_and_the_build_stays_pure_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tree(tmp_path)
    monkeypatch.setattr(
        hatch_build.sysconfig,
        "get_config_var",
        lambda name: "no-such-compiler-bubu -shared" if name == "LDSHARED" else None,
    )
    hook, app = _hook(root)
    data = _build_data()
    hook.initialize("standard", data)
    assert len(app.warnings) == 1 and "no-such-compiler-bubu" in app.warnings[0]
    assert data == _build_data()


def test_bubu_no_extensions_skips_the_compile_and_removes_an_older_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tree(tmp_path)
    stale = hatch_build.extension_path(root)
    stale.write_bytes(b"an older build")
    monkeypatch.setenv("BUBU_NO_EXTENSIONS", "1")
    hook, app = _hook(root)
    data = _build_data()
    hook.initialize("editable", data)
    assert data == _build_data() and app.warnings == []
    assert not stale.exists()
