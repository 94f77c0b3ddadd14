"""One registry of the delivery channels: which (kind, provider) pairs exist and which module
implements each. The settings say which ones a deployment uses (warnd.app turns them into
`ChannelSpec`s); each channel class builds itself from its own settings section
(`from_settings`). A new channel is a module in this folder and one line here."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from channels.base import Channel

# kind → provider → "module:Class" (imported only when used: provider SDKs are heavy)
REGISTRY: dict[str, dict[str, str]] = {
    "sms": {"tencent": "channels.sms_tencent:TencentSms", "twilio": "channels.sms_twilio:TwilioSms"},
    "voice": {"twilio": "channels.voice_twilio:TwilioVoice"},
    "wecom": {"wecom": "channels.wecom:WeComApp"},
}


class ChannelConfigError(ValueError):
    """A channel the settings ask for cannot be built; the message names the settings key."""


@dataclass(frozen=True)
class ChannelSpec:
    name: str  # the channel name policies use ("sms", "voice", "wecom")
    kind: str
    provider: str
    cfg: Any  # the provider's settings section
    section: str  # where those settings live, for error messages ("sms.tencent")
    fallback: Any = None  # settings to fall back on for empty fields (voice → sms.twilio)


def channel_class(kind: str, provider: str) -> type[Any]:
    try:
        target = REGISTRY[kind][provider]
    except KeyError:
        known = ", ".join(sorted(REGISTRY.get(kind, {}))) or "none"
        raise ChannelConfigError(f"unknown {kind} provider {provider!r} (known: {known})") from None
    module, _, cls = target.partition(":")
    found: type[Any] = getattr(importlib.import_module(module), cls)
    return found


def build(specs: Sequence[ChannelSpec], public_base_url: str) -> dict[str, Channel]:
    out: dict[str, Channel] = {}
    for spec in specs:
        cls = channel_class(spec.kind, spec.provider)
        try:
            out[spec.name] = cls.from_settings(spec.cfg, public_base_url=public_base_url.rstrip("/"),
                                               fallback=spec.fallback)
        except (ValueError, TypeError) as e:
            raise ChannelConfigError(f"{spec.section}: {e}") from e
    return out
