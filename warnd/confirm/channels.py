"""Voice and WeCom channels from configuration ([voice], [wecom] in warnd.toml)."""

from __future__ import annotations

from channels.base import Channel
from warnd.config import Settings, SettingsError


def confirm_channels(settings: Settings) -> dict[str, Channel]:
    out: dict[str, Channel] = {}
    public = settings.server.public_base_url.rstrip("/")
    v = settings.voice
    if v.provider == "twilio":
        from channels.voice_twilio import TwilioVoice

        t = settings.sms.twilio
        out["voice"] = TwilioVoice(
            account_sid=v.account_sid or t.account_sid, auth_token=v.auth_token or t.auth_token,
            from_number=v.from_number or t.from_number, public_base_url=public,
            api_base_url=(v.api_base_url or t.api_base_url) or None, ring_seconds=v.ring_seconds,
            gather_seconds=v.gather_seconds, attempts=v.attempts)
    elif v.provider:
        raise SettingsError(f"voice.provider: unknown provider {v.provider!r} (use twilio, or leave empty)")
    w = settings.wecom
    if w.enabled:
        from channels.wecom import WeComApp

        missing = [k for k in ("corp_id", "corp_secret", "token", "encoding_aes_key") if not getattr(w, k)]
        if missing or not w.agent_id:
            raise SettingsError(f"wecom: set {', '.join(missing + ([] if w.agent_id else ['agent_id']))}")
        try:
            out["wecom"] = WeComApp(corp_id=w.corp_id, corp_secret=w.corp_secret, agent_id=w.agent_id,
                                    token=w.token, encoding_aes_key=w.encoding_aes_key,
                                    api_base_url=w.api_base_url or None, max_per_second=w.max_per_second,
                                    per_user_per_minute=w.per_user_per_minute)
        except ValueError as e:
            raise SettingsError(f"wecom.encoding_aes_key: {e}") from e
    return out
