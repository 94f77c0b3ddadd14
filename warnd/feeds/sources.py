"""Feed sources (sources.toml, read and checked by warnd.config.sources).

A *source* is one automated producer of warnings: a service that pushes CAP to us
(`cap_push`), a CAP Atom/RSS feed we poll (`cap_poll`), or a telemetry network of rain
gauges and water-level stations (`telemetry`). Each names whom it trusts: the CAP
`<sender>` values it may carry (allow-list), and the bearer token or HMAC shared secret a
push must present. A message that fails either check is rejected and logged, never
disseminated.

Secrets may be written as `env:NAME` to be read from the environment at load time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from warnd.core.domain import Colour, Step

KINDS = ("cap_push", "cap_poll", "telemetry")


@dataclass(frozen=True)
class SourceMapping:
    """How this source's warnings map to hazard, colour and 631 step, when the message
    itself does not say (or says it in the source's own codes)."""

    hazard: str | None = None  # force this hazard code (e.g. a flash-flood-only platform)
    colour: Colour | None = None  # default colour when the message states none
    step: Step | None = None  # default 631 step when the message states none
    event_codes: Mapping[str, str] = field(default_factory=dict)  # source's eventCode → hazard
    # How the source writes hazard codes: "national" (GB/T eventType 11B03 …, read by the
    # vocabulary) or "type_level" (four digits: two of type, mapped by event_codes, then two
    # of level, 01 = blue … 04 = red).
    code_scheme: str = "national"
    # How the source numbers a bare level (a numeric severity / level parameter): "none" (a
    # number is never a colour), "blue_first" (1 = blue … 4 = red) or "red_first" (级: 1 = I =
    # red … 4 = IV = blue).
    level_scheme: str = "none"


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    senders: frozenset[str] = frozenset()
    token: str = ""
    secret: str = ""
    url: str = ""  # cap_poll
    interval_seconds: float = 60.0
    max_backoff_seconds: float = 1800.0
    timeout_seconds: float = 30.0
    headers: Mapping[str, str] = field(default_factory=dict)  # sent with every poll
    stations: frozenset[str] = frozenset()  # telemetry: allowed station ids (empty: all configured)
    mqtt_url: str = ""  # telemetry: mqtt://user:password@host:1883 (empty: HTTP only)
    topic: str = "warnd/telemetry/+"  # telemetry: MQTT topic filter; the last level is the station
    mapping: SourceMapping = field(default_factory=SourceMapping)
    enabled: bool = True

    @property
    def ingest_name(self) -> str:
        """The `source` recorded on alerts this source produces."""
        return f"feed:{self.name}"

    def sender_allowed(self, sender: str) -> bool:
        return sender in self.senders

    def check_auth(self, authorization: str | None, signature: str | None, body: bytes) -> bool:
        """A push is authentic if it carries the source's bearer token or a valid
        `X-Warnd-Signature: sha256=<hex HMAC-SHA256 of the body>` made with its secret.
        A source with neither configured accepts no push."""
        ok = False
        if self.token and authorization and authorization.startswith("Bearer "):
            ok = hmac.compare_digest(authorization[7:].strip().encode(), self.token.encode())
        if not ok and self.secret and signature:
            want = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            ok = hmac.compare_digest(signature.strip().lower().encode(), want.encode())
        return ok


@dataclass(frozen=True)
class Sources:
    by_name: Mapping[str, Source] = field(default_factory=dict)

    def get(self, name: str) -> Source | None:
        return self.by_name.get(name)

    def of_kind(self, kind: str) -> list[Source]:
        return [s for s in self.by_name.values() if s.kind == kind and s.enabled]

    def for_ingest_name(self, source: str) -> Source | None:
        if source.startswith("feed:"):
            return self.by_name.get(source[5:])
        return None
