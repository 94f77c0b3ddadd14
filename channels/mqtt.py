"""MQTT connection settings: the one definition, used by the loudspeaker channel, the
speaker simulator and the benchmark, and extended by `[speakers]` in warnd.toml
(warnd.config.settings.SpeakersCfg) so its keys stay flat there."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, field_validator

SPEAKER_TOPICS = "warnd/v1/dev"  # the loudspeakers' topics (docs/mqtt.md), under topic_root when set
_TOPIC_LEVEL = re.compile(r"[^/+#$\x00\s][^/+#\x00\s]*")


def shared_topic(group: str, topic: str) -> str:
    """Several warnd instances subscribe as one shared-subscription group (MQTT 5, `$share/…`;
    Mosquitto also for 3.1.1): the broker hands each message to one member, so an ack or a
    reading is handled once, by one instance."""
    return f"$share/{group}/{topic}"


class MqttSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "warnd"
    # The shared-subscription group of the instances of one deployment (empty: the client
    # id). Members are sessions: an instance that is down keeps its share queued until it is
    # back (persistent session), so every instance must come back under its own client id.
    share_group: str = ""
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
    # Topic levels in front of every loudspeaker topic ("county/431222": commands go to
    # county/431222/warnd/v1/dev/{device}/cmd), so that counties sharing one broker do not
    # share topics. Empty: today's warnd/v1/dev/… exactly.
    topic_root: str = ""

    @field_validator("topic_root")
    @classmethod
    def _plain_levels(cls, value: str) -> str:
        if value and not all(_TOPIC_LEVEL.fullmatch(level) for level in value.split("/")):
            raise ValueError("topic_root must be topic levels separated by '/' (\"county/431222\"): no empty "
                             "level, no leading or trailing '/', no wildcard (+ #), no '$' at a level's start, "
                             "no spaces")
        if len(value) > 200:
            raise ValueError("topic_root is longer than 200 characters")
        return value

    @property
    def speaker_root(self) -> str:
        """The topic every loudspeaker topic lives under: [topic_root/]warnd/v1/dev."""
        return f"{self.topic_root}/{SPEAKER_TOPICS}" if self.topic_root else SPEAKER_TOPICS
