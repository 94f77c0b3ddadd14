"""MQTT connection settings: the one definition, used by the loudspeaker channel, the
speaker simulator and the benchmark, and extended by `[speakers]` in warnd.toml
(warnd.config.settings.SpeakersCfg) so its keys stay flat there."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class MqttSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "warnd"
    username: str = ""
    password: str = ""
    tls: bool = False  # then usually port 8883
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls_insecure: bool = False  # skip hostname verification (test brokers only)
    keepalive: int = 60
    session_expiry_seconds: int = 86400
    reconnect_min_seconds: float = 1.0
    reconnect_max_seconds: float = 30.0
    # QoS 1 publishes in flight on the one connection. Mosquitto's default Receive Maximum is 20
    # (max_inflight_messages); paho does not read it from CONNACK, so set this to the broker's.
    max_inflight: int = 20
    publish_timeout_seconds: float = 30.0
