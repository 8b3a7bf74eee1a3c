"""Secrets: accessors, redaction everywhere, descriptor expansion.

See docs/contract/runtime-environment.md#secrets.
"""

from __future__ import annotations

import copy
import logging
import pickle
from pathlib import Path

import pytest

from bubu._runtime.secrets import Descriptors, Secrets, SecretValue, expand_secrets
from bubu._runtime.sources import MappingSource
from bubu.errors import SecretExpansionError

VALUE = "s3cr3t-VALUE-42"


# --- accessors (docs/contract/runtime-environment.md#secrets) ---


def test_get_present_missing_and_empty() -> None:
    s = Secrets({"a": VALUE, "empty": ""})
    assert s.get("a") == VALUE
    assert s.get("missing") is None
    assert s.get("empty") == ""
    assert "empty" in s
    assert "missing" not in s
    assert len(s) == 2


def test_get_all_returns_a_plaintext_copy() -> None:
    s = Secrets({"a": VALUE, "b": "x"})
    everything = s.get_all()
    assert everything == {"a": VALUE, "b": "x"}
    everything["a"] = "changed"
    assert s.get("a") == VALUE


def test_names_sorted_and_detached() -> None:
    s = Secrets({"b": "1", "a": "2", "c": "3"})
    names = s.names()
    assert names == ["a", "b", "c"]
    names.append("z")
    assert s.names() == ["a", "b", "c"]
    assert list(s) == ["a", "b", "c"]


def test_select_returns_requested_existing_keys_as_copy() -> None:
    s = Secrets({"a": "1", "b": "2"})
    picked = s.select("a", "missing")
    assert picked == {"a": "1"}
    picked["a"] = "x"
    assert s.get("a") == "1"
    assert s.select() == {}


def test_empty_secrets() -> None:
    s = Secrets()
    assert s.get_all() == {}
    assert s.names() == []
    assert not s


def test_constructor_copies_input() -> None:
    source = {"a": "1"}
    s = Secrets(source)
    source["a"] = "2"
    assert s.get("a") == "1"


# --- nothing leaks ---


def test_repr_str_format_never_show_values_or_keys() -> None:
    s = Secrets({"api_key": VALUE})
    for text in (repr(s), str(s), f"{s}", f"{s!r}", f"{s:>40}", "%s" % s, "{}".format(s)):  # noqa: UP031, UP032
        assert VALUE not in text
        assert "api_key" not in text
    assert str(s) == "[redacted secrets]"


def test_logging_never_shows_values(caplog: pytest.LogCaptureFixture) -> None:
    s = Secrets({"api_key": VALUE})
    with caplog.at_level(logging.INFO, logger="test.secrets"):
        logging.getLogger("test.secrets").info("secrets: %s %r", s, s, extra={"secrets": s})
    assert VALUE not in caplog.text
    assert all(VALUE not in r.getMessage() for r in caplog.records)


def test_exceptions_never_show_values() -> None:
    s = Secrets({"api_key": VALUE})
    exc = RuntimeError(s)
    assert VALUE not in str(exc)
    assert VALUE not in repr(exc)


def test_no_dict_and_not_a_dict() -> None:
    s = Secrets({"api_key": VALUE})
    assert not isinstance(s, dict)
    assert not hasattr(s, "__dict__")
    with pytest.raises(TypeError):
        vars(s)


def test_pickling_is_refused() -> None:
    for obj in (Secrets({"a": VALUE}), SecretValue(VALUE), Descriptors({"a": VALUE})):
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(obj)


def test_copy_keeps_values_in_memory() -> None:
    s = Secrets({"a": VALUE})
    assert copy.copy(s).get("a") == VALUE
    assert copy.deepcopy(s).get("a") == VALUE
    assert copy.deepcopy(s) == s


def test_secret_value_redacts() -> None:
    v = SecretValue(VALUE)
    assert v.reveal() == VALUE
    for text in (repr(v), str(v), f"{v}", f"{v:20}"):
        assert VALUE not in text
    assert v == SecretValue(VALUE)
    assert v != SecretValue("other")


# --- expansion (docs/contract/runtime-environment.md#secrets) ---


def test_literal_descriptors() -> None:
    s = expand_secrets({"API": "literal", "EMPTY": ""}, MappingSource({}))
    assert s.get_all() == {"API": "literal", "EMPTY": ""}


def test_none_or_empty_descriptors_give_empty_secrets() -> None:
    assert expand_secrets(None).get_all() == {}
    assert expand_secrets({}).get_all() == {}


def test_env_prefix_expansion() -> None:
    src = MappingSource({"DB_USER": "u", "DB_PASS": "p", "DB_": "skipped", "OTHER": "o"})
    s = expand_secrets({"db": "env:DB_"}, src)
    assert s.get_all() == {"USER": "u", "PASS": "p"}


def test_env_prefix_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUBUTEST_SEC_TOKEN", VALUE)
    assert expand_secrets({"x": "env:BUBUTEST_SEC_"}).get("TOKEN") == VALUE


def test_env_prefix_empty_fails_and_does_not_import_environment() -> None:
    src = MappingSource({"HOME": "/root", "PATH": "/bin"})
    with pytest.raises(SecretExpansionError) as info:
        expand_secrets({"all": "env:"}, src)
    assert str(info.value) == (
        'secret expansion failed: secret "all" (env): invalid secret descriptor: '
        "env secret prefix must not be empty"
    )


def test_literal_overrides_expanded_key_regardless_of_order() -> None:
    src = MappingSource({"P_KEY": "from-env"})
    # "KEY" (literal) sorts before "a" (env): the expanded key must not overwrite it.
    assert expand_secrets({"KEY": "literal", "a": "env:P_"}, src).get("KEY") == "literal"
    # "zz" (env) expands before "zzz"... literal processed later overwrites.
    src2 = MappingSource({"P_zzz": "from-env"})
    assert expand_secrets({"a": "env:P_", "zzz": "literal"}, src2).get("zzz") == "literal"


def test_file_descriptor_single_file_trims_trailing_newlines(tmp_path: Path) -> None:
    f = tmp_path / "password"
    f.write_text(VALUE + "\n\n")
    s = expand_secrets({"db": f"file: {f} "})
    assert s.get_all() == {"password": VALUE}


def test_file_descriptor_directory_keeps_nested_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "db" / "writer").mkdir(parents=True)
    (tmp_path / "db" / "reader").mkdir(parents=True)
    (tmp_path / "db" / "writer" / "password").write_text("w\n")
    (tmp_path / "db" / "reader" / "password").write_text("r\n")
    (tmp_path / "top").write_text("t")
    s = expand_secrets({"db": f"file:{tmp_path}"})
    assert s.get_all() == {"db/writer/password": "w", "db/reader/password": "r", "top": "t"}


def test_file_descriptor_root_symlink_rejected(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_text("x")
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(SecretExpansionError) as info:
        expand_secrets({"s": f"file:{link}"})
    assert "file secret path must not be a symlink" in str(info.value)
    assert str(tmp_path) not in str(info.value)


def test_symlink_escaping_the_root_is_skipped(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("leak")
    root = tmp_path / "root"
    root.mkdir()
    (root / "ok").write_text("fine")
    (root / "evil").symlink_to(outside)
    assert expand_secrets({"s": f"file:{root}"}).get_all() == {"ok": "fine"}


def test_kubernetes_secret_volume_layout_yields_plain_keys(tmp_path: Path) -> None:
    # kubelet: <root>/..2024_01_01.../password, ..data -> ..2024..., password -> ..data/password
    stamp = tmp_path / "..2024_01_01_00_00_00.000000000"
    stamp.mkdir()
    (stamp / "password").write_text(VALUE + "\n")
    (stamp / "username").write_text("admin")
    (tmp_path / "..data").symlink_to(stamp.name)
    (tmp_path / "password").symlink_to("..data/password")
    (tmp_path / "username").symlink_to("..data/username")
    s = expand_secrets({"db": f"file:{tmp_path}"})
    assert s.get_all() == {"password": VALUE, "username": "admin"}


def test_oversized_file_rejected(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * (1024 * 1024 + 1))
    (tmp_path / "small").write_text("s")
    with pytest.raises(SecretExpansionError) as info:
        expand_secrets({"blob": f"file:{tmp_path}", "lit": "keep"})
    assert str(info.value) == (
        'secret expansion failed: secret "blob" (file): invalid secret descriptor: '
        "secret file big exceeds max size 1048576"
    )


def test_too_many_files_imports_zero_keys(tmp_path: Path) -> None:
    for i in range(257):
        (tmp_path / f"k{i:03d}").write_text("v")
    with pytest.raises(SecretExpansionError, match="secret file count exceeds max 256"):
        expand_secrets({"many": f"file:{tmp_path}"})


def test_exactly_256_files_are_accepted(tmp_path: Path) -> None:
    for i in range(256):
        (tmp_path / f"k{i:03d}").write_text("v")
    assert len(expand_secrets({"many": f"file:{tmp_path}"})) == 256


def test_unreadable_file_fails_descriptor_without_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bubu._runtime import secrets as secrets_module

    root = tmp_path / "dir"
    root.mkdir()
    (root / "good").write_text("g")
    (root / "bad").write_text(VALUE)
    real_open = open

    def fake_open(path: str, *args: object, **kwargs: object) -> object:
        # The test runs as root, so chmod 0 cannot make a file unreadable: simulate EACCES.
        if str(path).endswith("bad"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(secrets_module, "open", fake_open, raising=False)
    with pytest.raises(SecretExpansionError) as info:
        expand_secrets({"d": f"file:{root}", "lit": "x"})
    assert str(info.value) == (
        'secret expansion failed: secret "d" (file): open: permission denied'
    )
    assert str(root) not in str(info.value)


def test_missing_path_error_names_secret_not_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "secret-path-marker"
    with pytest.raises(SecretExpansionError) as info:
        expand_secrets({"api": f"file:{missing}"})
    text = str(info.value)
    assert text == 'secret expansion failed: secret "api" (file): lstat: no such file or directory'
    assert "secret-path-marker" not in text


def test_empty_file_path_is_invalid() -> None:
    with pytest.raises(SecretExpansionError, match="file secret path must not be empty"):
        expand_secrets({"x": "file:  "})


def test_all_failures_are_joined(tmp_path: Path) -> None:
    with pytest.raises(SecretExpansionError) as info:
        expand_secrets({"a": "env:", "b": f"file:{tmp_path / 'missing'}"})
    lines = str(info.value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["secret expansion failed"] * 2
    assert '"a" (env)' in lines[0]
    assert '"b" (file)' in lines[1]


def test_warnings_name_secret_and_kind_never_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "path-marker-xyz"
    with (
        caplog.at_level(logging.WARNING, logger="bubu.runtime"),
        pytest.raises(SecretExpansionError),
    ):
        expand_secrets({"api": f"file:{marker}"})
    record = caplog.records[0]
    assert record.secret == "api"  # type: ignore[attr-defined]
    assert record.descriptorKind == "file"  # type: ignore[attr-defined]
    assert not hasattr(record, "descriptor")
    assert "path-marker-xyz" not in caplog.text
    for r in caplog.records:
        assert "path-marker-xyz" not in str(r.__dict__)


def test_failed_file_descriptor_never_exposes_descriptor_as_value(tmp_path: Path) -> None:
    descriptor = f"file:{tmp_path / 'missing'}"
    with pytest.raises(SecretExpansionError) as info:
        expand_secrets({"api": descriptor})
    assert descriptor not in str(info.value)
    assert not hasattr(info.value, "secrets")


def test_descriptors_mapping_redacts() -> None:
    d = Descriptors({"API": VALUE, "B": "env:X_"})
    assert dict(d) == {"API": VALUE, "B": "env:X_"}
    assert len(d) == 2
    assert VALUE not in repr(d)
    assert VALUE not in str(d)
    assert d == Descriptors({"B": "env:X_", "API": VALUE})
