"""How S3 settings map onto the client (no server; the behaviour is in tests/integration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bubu._runtime.env import load_env
from bubu._runtime.sources import MappingSource
from bubu.errors import ContractError

pytest.importorskip("obstore")

from bubu._storage.s3 import _ob_config  # noqa: E402


def s3(**env: str):  # type: ignore[no-untyped-def]
    base = {"BUBU_STORAGE_PROVIDER": "s3", "BUBU_STORAGE_S3_BUCKET": "b"}
    cfg = load_env(MappingSource({**base, **env})).storage
    assert cfg is not None and cfg.s3 is not None
    return cfg.s3


def test_aws_defaults_are_virtual_host_and_the_default_chain() -> None:
    kw = _ob_config(s3())
    assert kw["virtual_hosted_style_request"] is True
    assert "endpoint" not in kw and "skip_signature" not in kw and "access_key_id" not in kw
    assert kw["checksum_algorithm"] == "sha256"


def test_custom_endpoint_is_path_style_and_anonymous_without_credentials() -> None:
    cfg = s3(BUBU_STORAGE_S3_ENDPOINT="minio.local:9000", BUBU_S3_TLS="false")
    assert cfg.endpoint == "http://minio.local:9000"
    kw = _ob_config(cfg)
    assert kw["virtual_hosted_style_request"] is False
    assert kw["skip_signature"] is True
    forced = _ob_config(s3(BUBU_STORAGE_S3_ENDPOINT="https://x", BUBU_S3_FORCE_PATH_STYLE="no"))
    assert forced["virtual_hosted_style_request"] is True


def test_static_keys_region_and_sse() -> None:
    kw = _ob_config(
        s3(
            BUBU_S3_ACCESS_KEY_ID="AK",
            BUBU_S3_SECRET_ACCESS_KEY="SK",
            BUBU_S3_SESSION_TOKEN="TOK",
            BUBU_STORAGE_S3_REGION="eu-west-3",
            BUBU_S3_SSE="kms",
            BUBU_S3_SSE_KMS_KEY="key-1",
        )
    )
    assert (kw["access_key_id"], kw["secret_access_key"], kw["token"]) == ("AK", "SK", "TOK")
    assert kw["region"] == "eu-west-3"
    assert (kw["server_side_encryption"], kw["sse_kms_key_id"]) == ("aws:kms", "key-1")
    assert _ob_config(s3(BUBU_S3_SSE="sse-s3"))["server_side_encryption"] == "AES256"


def test_a_shared_credentials_profile(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.write_text(
        "[default]\naws_access_key_id=D\naws_secret_access_key=DS\n[ci]\naws_access_key_id=C\naws_secret_access_key=CS\n"
    )
    kw = _ob_config(
        s3(
            BUBU_STORAGE_S3_ENDPOINT="http://127.0.0.1:1",
            AWS_SHARED_CREDENTIALS_FILE=str(creds),
            AWS_PROFILE="ci",
        )
    )
    assert (kw["access_key_id"], kw["secret_access_key"]) == ("C", "CS")
    assert "skip_signature" not in kw


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"BUBU_STORAGE_S3_ENDPOINT": "http://x", "BUBU_S3_TLS": "true"},
            "requires https endpoint scheme",
        ),
        ({"BUBU_S3_TLS": " "}, "BUBU_S3_TLS is set but empty"),
        ({"BUBU_S3_FORCE_PATH_STYLE": "maybe"}, "invalid BUBU_S3_FORCE_PATH_STYLE value"),
        ({"BUBU_S3_ACCESS_KEY_ID": "AK"}, "BUBU_S3_SECRET_ACCESS_KEY must be set"),
        ({"BUBU_S3_SSE": "des"}, "unsupported BUBU_S3_SSE value"),
    ],
)
def test_bad_settings_are_fatal_and_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ContractError, match=message):
        s3(**env)
