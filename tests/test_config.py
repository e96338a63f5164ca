"""Settings: the validations that refuse a dangerous or inconsistent configuration at start-up,
and the defaults that follow from other settings."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from app.config import Settings, parse_shape


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_an_empty_key_list_from_the_environment_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIMSCORE_API_KEYS", " , ")
    with pytest.raises(ValidationError, match="holds no key"):
        Settings(_env_file=None)


def test_short_keys_refuse_to_start() -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        settings(api_keys=[SecretStr("short")])


def test_keys_from_the_environment_are_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMSCORE_API_KEYS", "a" * 16 + ", " + "b" * 20)
    keys = Settings(_env_file=None).api_keys
    assert [key.get_secret_value() for key in keys] == ["a" * 16, "b" * 20]


def test_keys_turn_the_docs_off_and_metrics_keyed() -> None:
    open_server = settings()
    keyed = settings(api_keys=[SecretStr("k" * 16)])
    assert open_server.docs_enabled and not open_server.metrics_need_key
    assert not keyed.docs_enabled and keyed.metrics_need_key
    explicit = settings(api_keys=[SecretStr("k" * 16)], docs="on", metrics_require_key=False)
    assert explicit.docs_enabled and not explicit.metrics_need_key


def test_the_drain_must_cover_the_request_timeout() -> None:
    with pytest.raises(ValidationError, match="drain_timeout_s"):
        settings(request_timeout_s=60, drain_timeout_s=30)
    assert settings(request_timeout_s=30, drain_timeout_s=30).drain_timeout_s == 30


def test_precision_sets_compile_and_tf32_unless_told() -> None:
    fp32, bf16 = settings(), settings(precision="bf16")
    assert (fp32.compile_enabled, fp32.tf32_enabled) == (False, False)
    assert (bf16.compile_enabled, bf16.tf32_enabled) == (True, True)
    told = settings(precision="bf16", compile="off", tf32=False)
    assert (told.compile_enabled, told.tf32_enabled) == (False, False)
    assert settings(compile="on").compile_enabled


@pytest.mark.parametrize(
    ("text", "shape"), [("224", (224, 224)), ("1024x768", (768, 1024)), ("16X32", (32, 16))]
)
def test_warm_up_shapes_are_squares_or_width_x_height(text: str, shape: tuple[int, int]) -> None:
    assert parse_shape(text) == shape


def test_warm_up_shapes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMSCORE_WARMUP_SIDES", "224, 640x480")
    assert Settings(_env_file=None).warmup_shapes == [(224, 224), (480, 640)]
    monkeypatch.setenv("SIMSCORE_WARMUP_SIDES", "")
    assert Settings(_env_file=None).warmup_shapes == []


@pytest.mark.parametrize("text", ["8", "1024x8", "abc"])
def test_bad_warm_up_shapes_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        settings(warmup_sides=[text])
