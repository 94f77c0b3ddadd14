"""[voice] and [wecom] settings build the channels; mistakes are refused at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels.voice_twilio import TwilioVoice
from channels.wecom import WeComApp
from warnd.app import build_channels
from warnd.config import ConfigError, load_settings, package_default

KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


def test_example_config_loads_without_extra_channels() -> None:
    s = load_settings(package_default("warnd.example.toml"), env={})
    assert s.voice.provider == "" and s.wecom.enabled is False


def test_voice_and_wecom_from_toml(tmp_path: Path) -> None:
    p = tmp_path / "warnd.toml"
    p.write_text(f"""
[sms]
provider = "twilio"
[sms.twilio]
account_sid = "AC{'0' * 32}"
auth_token = "t"
from_number = "+15005550006"
[voice]
provider = "twilio"
attempts = 3
[wecom]
enabled = true
corp_id = "ww1"
agent_id = 1000002
token = "tok"
""", encoding="utf-8")
    with pytest.raises(ConfigError, match="corp_secret"):
        build_channels(load_settings(p, env={}))
    s = load_settings(p, env={"WARND_WECOM_CORP_SECRET": "sec", "WARND_WECOM_AES_KEY": KEY})
    chans = build_channels(s)
    assert set(chans) == {"sms", "voice", "wecom"}
    assert isinstance(chans["voice"], TwilioVoice) and chans["voice"].attempts == 3
    assert isinstance(chans["wecom"], WeComApp)
    with pytest.raises(ConfigError, match="encoding_aes_key"):
        build_channels(load_settings(p, env={"WARND_WECOM_CORP_SECRET": "sec", "WARND_WECOM_AES_KEY": "short"}))
