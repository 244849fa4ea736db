"""Configuration: environment over cityplus.toml over defaults; invalid settings are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityplus.core.config import ConfigError, load_settings, mask_url


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("CITYPLUS_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_defaults_use_sqlite_under_var() -> None:
    s = load_settings()
    assert s.database_url == "sqlite:///var/cityplus.db"
    assert s.default_locale == "zh_CN"
    assert s.max_body_bytes == 10 * 1024 * 1024
    assert s.bus_url == ""


def test_env_overrides_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "cityplus.toml").write_text('base_url = "https://city.example.cn"\ndefault_locale = "en"\n')
    assert load_settings().base_url == "https://city.example.cn"
    monkeypatch.setenv("CITYPLUS_BASE_URL", "https://other.example.cn/")
    s = load_settings()
    assert s.base_url == "https://other.example.cn"
    assert s.default_locale == "en"


def test_toml_cityplus_section_is_read(tmp_path: Path) -> None:
    (tmp_path / "cityplus.toml").write_text("[cityplus]\nmax_body_bytes = 2048\n")
    assert load_settings().max_body_bytes == 2048


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CITYPLUS_DATABASE_URL", "mysql://x"),
        ("CITYPLUS_BUS_URL", "amqp://x"),
        ("CITYPLUS_MAX_BODY_BYTES", "ten"),
        ("CITYPLUS_DEFAULT_LOCALE", "fr"),
        ("CITYPLUS_BASE_URL", "not a url"),
        ("CITYPLUS_MQTT_URL", "http://x"),
        ("CITYPLUS_SMTP_PORT", "70000"),
        ("CITYPLUS_SMTP_FROM", "no-at-sign"),
    ],
)
def test_invalid_setting_is_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert name in str(info.value)


def test_postgres_scheme_is_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYPLUS_DATABASE_URL", "postgresql://u:p@db/city")
    assert load_settings().database_url == "postgresql+psycopg://u:p@db/city"


def test_secret_key_generated_once_and_kept(tmp_path: Path) -> None:
    s = load_settings(var_dir=tmp_path / "var")
    key = s.ensure_secret_key()
    assert len(key) >= 40
    assert (tmp_path / "var" / "secret_key").stat().st_mode & 0o777 == 0o600
    assert load_settings(var_dir=tmp_path / "var").ensure_secret_key() == key


def test_masked_hides_secrets() -> None:
    s = load_settings(secret_key="topsecret", database_url="postgresql+psycopg://u:pw@h/db")
    masked = s.masked()
    assert masked["SECRET_KEY"] == "********"
    assert "pw" not in masked["DATABASE_URL"]
    assert mask_url("nats://a:b@h:4222") == "nats://a:****@h:4222"


def test_broken_toml_is_reported(tmp_path: Path) -> None:
    (tmp_path / "cityplus.toml").write_text("base_url = \n")
    with pytest.raises(ConfigError, match="cityplus.toml"):
        load_settings()
