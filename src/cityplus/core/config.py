"""Platform configuration: environment variables (CITYPLUS_*) over an optional cityplus.toml."""

from __future__ import annotations

import os
import secrets
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

SECRET_NAMES = ("secret_key", "smtp_password")
LOCALES = ("zh_CN", "en")


class ConfigError(Exception):
    """Raised when the configuration is invalid; the message names the setting."""


def _toml_path() -> Path:
    return Path(os.environ.get("CITYPLUS_CONFIG_FILE", "cityplus.toml"))


class _TomlSource(PydanticBaseSettingsSource):
    """Reads settings from cityplus.toml (keys are the setting names, lower or upper case)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _toml_path()
        if not path.is_file():
            return {}
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        section = data.get("cityplus", data)
        return {str(k).lower(): v for k, v in section.items()}


class Settings(BaseSettings):
    """Effective settings. Environment wins over cityplus.toml, which wins over defaults."""

    model_config = SettingsConfigDict(env_prefix="CITYPLUS_", extra="ignore", validate_default=True)

    var_dir: Path = Field(default=Path("var"), description="Directory for local state (SQLite, secret key).")
    database_url: str = Field(default="", description="SQLAlchemy URL; default: SQLite file var/cityplus.db.")
    secret_key: str = Field(default="", description="Signing key; generated into var/secret_key when unset.")
    base_url: str = Field(default="http://127.0.0.1:8000", description="Public base URL of the portal.")
    mqtt_url: str = Field(default="", description="MQTT broker URL (mqtt://host:1883); empty: not used.")
    bus_url: str = Field(default="", description="Event bus; empty: in-process, nats://host:4222: JetStream.")
    bus_stream: str = Field(default="CITYPLUS", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                            description="JetStream stream (and subject prefix) for events.")
    smtp_host: str = Field(default="", description="SMTP relay host; empty: mail disabled.")
    smtp_port: int = Field(default=25, ge=1, le=65535, description="SMTP relay port.")
    smtp_user: str = Field(default="", description="SMTP login; empty: no login.")
    smtp_password: str = Field(default="", description="SMTP password (masked in `cityplus config`).")
    smtp_from: str = Field(default="cityplus@localhost", pattern=r"^[^@\s]+@[^@\s]+$",
                           description="Sender address of the platform's mail.")
    smtp_starttls: bool = Field(default=False, description="Upgrade the SMTP connection with STARTTLS.")
    default_locale: str = Field(default="zh_CN", description="UI locale when the user has not chosen one.")
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="Largest request body.")
    login_max_failures: int = Field(default=5, ge=1, description="Failed logins before throttling.")
    login_lockout_seconds: int = Field(default=300, ge=1, description="Throttle window after failures.")
    session_hours: int = Field(default=12, ge=1, description="Web session lifetime.")
    log_format: str = Field(default="json", description="json or console.")
    demo: bool = Field(default=False, description="Running the demo city (prints demo accounts).")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    @field_validator("database_url")
    @classmethod
    def _check_db(cls, v: str) -> str:
        if v and not v.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
        if v.startswith("postgresql://") or v.startswith("postgres://"):
            v = "postgresql+psycopg://" + v.split("://", 1)[1]
        return v

    @field_validator("bus_url")
    @classmethod
    def _check_bus(cls, v: str) -> str:
        if v and not v.startswith(("nats://", "memory://")):
            raise ValueError("must be empty (in-process) or a nats:// URL")
        return v

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt(cls, v: str) -> str:
        if v and urlsplit(v).scheme not in ("mqtt", "mqtts", "tcp"):
            raise ValueError("must be an mqtt://host:port URL")
        return v

    @field_validator("base_url")
    @classmethod
    def _check_base(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL")
        return v.rstrip("/")

    @field_validator("default_locale")
    @classmethod
    def _check_locale(cls, v: str) -> str:
        v = v.replace("-", "_")
        if v.lower() in ("zh", "zh_cn"):
            return "zh_CN"
        if v.lower().startswith("en"):
            return "en"
        raise ValueError(f"must be one of {', '.join(LOCALES)}")

    @field_validator("log_format")
    @classmethod
    def _check_log(cls, v: str) -> str:
        if v not in ("json", "console"):
            raise ValueError("must be json or console")
        return v

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.var_dir / 'cityplus.db').as_posix()}"
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def ensure_secret_key(self) -> str:
        """Return the secret key, generating and keeping it in var/secret_key on first use."""
        if self.secret_key:
            return self.secret_key
        path = self.var_dir / "secret_key"
        if path.is_file():
            self.secret_key = path.read_text(encoding="utf-8").strip()
        else:
            self.var_dir.mkdir(parents=True, exist_ok=True)
            key = secrets.token_urlsafe(48)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(key)
            self.secret_key = key
        return self.secret_key

    def masked(self) -> dict[str, Any]:
        """Effective configuration with secrets and URL passwords masked."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name in SECRET_NAMES:
                value = "********" if value else "(generated on first run)"
            elif isinstance(value, str) and "://" in value:
                value = mask_url(value)
            elif isinstance(value, Path):
                value = str(value)
            out[name.upper()] = value
        return out


def mask_url(url: str) -> str:
    """Replace the password in a URL with ****."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":****@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning validation errors into a ConfigError that names each setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "CITYPLUS_" + str(err["loc"][0]).upper() if err["loc"] else "CITYPLUS_?"
            lines.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings (cached; tests build their own with load_settings)."""
    return load_settings()
