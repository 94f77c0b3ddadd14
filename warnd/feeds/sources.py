"""Feed sources as configuration (config/sources.toml).

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
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from warnd.core.domain import Colour, Step

KINDS = ("cap_push", "cap_poll", "telemetry")
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_STEP_WORDS = {"6": Step.FORECAST, "3": Step.WARNING, "1": Step.IMMINENT}


class SourcesError(ValueError):
    pass


@dataclass(frozen=True)
class SourceMapping:
    """How this source's warnings map to hazard, colour and 631 step, when the message
    itself does not say (or says it in the source's own codes)."""

    hazard: str | None = None  # force this hazard code (e.g. a flash-flood-only platform)
    colour: Colour | None = None  # default colour when the message states none
    step: Step | None = None  # default 631 step when the message states none
    event_codes: Mapping[str, str] = field(default_factory=dict)  # source's eventCode → hazard


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


def _secret(value: Any, where: str, env: Mapping[str, str]) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SourcesError(f"{where} must be a string")
    if value.startswith("env:"):
        name = value[4:]
        got = env.get(name, "")
        if not got:
            raise SourcesError(f"{where}: environment variable {name} is not set")
        return got
    if value and len(value) < 16:
        raise SourcesError(f"{where}: secrets must be at least 16 characters")
    return value


def _strs(value: Any, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise SourcesError(f"{where} must be a list of non-empty strings")
    return frozenset(v.strip() for v in value)


def _num(spec: dict[str, Any], key: str, default: float, where: str) -> float:
    v = spec.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
        raise SourcesError(f"{where} {key} must be a positive number")
    return float(v)


def _mapping(raw: Any, where: str) -> SourceMapping:
    if raw is None:
        return SourceMapping()
    if not isinstance(raw, dict):
        raise SourcesError(f"{where} must be a table")
    unknown = set(raw) - {"hazard", "colour", "step", "event_codes"}
    if unknown:
        raise SourcesError(f"{where}: unknown keys {sorted(unknown)}")
    colour = step = None
    if "colour" in raw:
        try:
            colour = Colour(raw["colour"])
        except ValueError:
            raise SourcesError(f"{where} colour must be blue/yellow/orange/red") from None
    if "step" in raw:
        s = str(raw["step"])
        try:
            step = _STEP_WORDS.get(s) or Step(s)
        except ValueError:
            raise SourcesError(f"{where} step must be forecast/warning/imminent (or 6/3/1)") from None
    codes = raw.get("event_codes", {})
    if not isinstance(codes, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in codes.items()):
        raise SourcesError(f"{where} event_codes must map strings to hazard codes")
    hazard = raw.get("hazard")
    if hazard is not None and not isinstance(hazard, str):
        raise SourcesError(f"{where} hazard must be a hazard code")
    return SourceMapping(hazard=hazard, colour=colour, step=step, event_codes=dict(codes))


def parse_sources(raw: dict[str, Any], env: Mapping[str, str] | None = None,
                  known_hazards: tuple[str, ...] | None = None) -> Sources:
    env = os.environ if env is None else env
    table = raw.get("sources", {})
    if not isinstance(table, dict):
        raise SourcesError("[sources] must be a table of sources")
    out: dict[str, Source] = {}
    for name, spec in table.items():
        where = f"[sources.{name}]"
        if not _NAME_RE.fullmatch(name):
            raise SourcesError(f"{where}: source names are lower-case letters, digits, - and _")
        if not isinstance(spec, dict):
            raise SourcesError(f"{where} must be a table")
        kind = spec.get("kind")
        if kind not in KINDS:
            raise SourcesError(f"{where} kind must be one of {', '.join(KINDS)}")
        known = {"kind", "senders", "token", "secret", "url", "interval_seconds", "max_backoff_seconds",
                 "timeout_seconds", "headers", "stations", "mapping", "enabled", "mqtt_url", "topic"}
        unknown = set(spec) - known
        if unknown:
            raise SourcesError(f"{where}: unknown keys {sorted(unknown)}")
        senders = _strs(spec.get("senders"), f"{where} senders")
        token = _secret(spec.get("token"), f"{where} token", env)
        secret = _secret(spec.get("secret"), f"{where} secret", env)
        url = spec.get("url", "")
        if kind in ("cap_push", "cap_poll") and not senders:
            raise SourcesError(f"{where}: a CAP source needs a non-empty senders allow-list")
        if kind == "cap_push" and not (token or secret):
            raise SourcesError(f"{where}: a push source needs a token or a secret")
        if kind == "cap_poll" and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
            raise SourcesError(f"{where}: a poll source needs an http(s) url")
        headers = spec.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise SourcesError(f"{where} headers must map names to strings")
        headers = {k: (_secret(v, f"{where} headers.{k}", env) if v.startswith("env:") else v)
                   for k, v in headers.items()}
        mapping = _mapping(spec.get("mapping"), f"{where} mapping")
        if known_hazards is not None:
            for h in [mapping.hazard, *mapping.event_codes.values()]:
                if h is not None and h not in known_hazards:
                    raise SourcesError(f"{where} mapping: {h!r} is not a hazard of the vocabulary")
        out[name] = Source(
            name=name, kind=kind, senders=senders, token=token, secret=secret, url=url,
            interval_seconds=_num(spec, "interval_seconds", 60.0, where),
            max_backoff_seconds=_num(spec, "max_backoff_seconds", 1800.0, where),
            timeout_seconds=_num(spec, "timeout_seconds", 30.0, where),
            headers=headers, stations=_strs(spec.get("stations"), f"{where} stations"),
            mapping=mapping, enabled=bool(spec.get("enabled", True)),
            mqtt_url=_secret(spec.get("mqtt_url"), f"{where} mqtt_url", env) if str(
                spec.get("mqtt_url", "")).startswith("env:") else str(spec.get("mqtt_url", "")),
            topic=str(spec.get("topic", "warnd/telemetry/+")),
        )
    return Sources(out)


def load_sources(path: Path, env: Mapping[str, str] | None = None,
                 known_hazards: tuple[str, ...] | None = None) -> Sources:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SourcesError(f"{path}: {e}") from e
    try:
        return parse_sources(raw, env, known_hazards)
    except SourcesError as e:
        raise SourcesError(f"{path}: {e}") from None
