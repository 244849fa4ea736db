"""Settings of the device gateway (CITYPLUS_IOT_*), documented in docs/modules/iot.md."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IotSettings(BaseSettings):
    """How the gateway talks to the MQTT broker, judges device health and keeps dead letters."""

    model_config = SettingsConfigDict(env_prefix="CITYPLUS_IOT_", extra="ignore")

    mqtt: bool = Field(default=True, description="Subscribe to device topics when CITYPLUS_MQTT_URL is set.")
    mqtt_client_id: str = Field(default="cityplus-iot", pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
                                description="MQTT client id of the gateway (its persistent session).")
    mqtt_session_expiry: int = Field(default=86_400, ge=0, le=2**32 - 1,
                                     description="Seconds the broker keeps the gateway's session while it is away.")
    mqtt_lease_seconds: float = Field(default=15, ge=1, le=3600,
                                      description="Lease of the single gateway connection; failover after it.")
    default_interval: int = Field(default=300, ge=1, description="Expected seconds between a device's messages.")
    offline_after: int = Field(default=3, ge=1, description="Missed intervals after which a device is offline.")
    health_check_seconds: float = Field(default=30, gt=0, description="How often offline devices are looked for.")
    dead_letter_bytes: int = Field(default=2048, ge=64, le=65_536,
                                   description="Raw payload bytes kept with a dead letter.")
    max_payload_bytes: int = Field(default=65_536, ge=64, description="Largest accepted device message.")
    device_rate: float = Field(default=20, gt=0, description="Messages a second one device may send (sustained).")
    device_burst: float = Field(default=200, ge=1, description="Messages one device may send in a burst.")
    receipt_hours: int = Field(default=48, ge=1, description="Hours idempotency receipts are kept.")
    batch_size: int = Field(default=1000, ge=1, le=20_000,
                            description="MQTT messages applied (and acknowledged) per transaction at most.")
    batch_ms: float = Field(default=50, ge=0, le=5000,
                            description="Milliseconds an MQTT micro-batch waits for more messages after its first.")
    simulate_rate: float = Field(default=0, ge=0, le=10_000,
                                 description="Messages a second of the city simulator inside `cityplus serve`; 0: off.")
    simulate_faults: bool = Field(default=False, description="The embedded simulator injects device faults.")
    simulate_seed: int | None = Field(default=None, description="Random seed of the embedded simulator.")
