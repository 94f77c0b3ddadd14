"""warnd.toml: validated by the settings models, one line per mistake with its key path;
secrets from the environment; where the files beside it are found."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels.mqtt import MqttSettings
from support.samples import sample
from warnd.config import ConfigError, Settings, SpeakersCfg, load_settings, package_default
from warnd.config.files import find_config
from warnd.config.settings import load_config


def write(tmp_path: Path, text: str, name: str = "warnd.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def errors(tmp_path: Path, text: str) -> list[str]:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_settings(p, env={})
    lines = str(e.value).splitlines()
    assert all(line.startswith(f"{p}: ") for line in lines), lines
    return [line.removeprefix(f"{p}: ") for line in lines]


def test_the_example_is_the_defaults() -> None:
    # config/warnd.toml is the annotated example shipped in the package: every value it shows
    # must be the default, or the comments lie.
    assert sample("warnd.toml").resolve() == package_default("warnd.example.toml")
    assert load_settings(sample("warnd.toml"), env={}) == Settings()


@pytest.mark.parametrize(("text", "line"), [
    ("[server]\nhots = 'x'", "server.hots: unknown key (allowed: body_timeout_seconds, header_timeout_seconds, host, "
     "instance, large_bodies_at_once, large_body_timeout_seconds, max_body_bytes, max_connections, "
     "max_connections_per_client, port, public_base_url)"),
    ("[servers]\nhost = 'x'", "servers: unknown key (allowed: api, auth, clock, console, county, database, delivery, "
                              "feeds, ingest, metrics, policy, public, report, roster, server, sms, speakers, voice, "
                              "wecom)"),
    ("[server]\nport = '8080'", "server.port: must be a whole number, not '8080'"),
    ("[server]\nport = 70000", "server.port: must be at most 65535"),
    ("[database]\ndurable = 1", "database.durable: must be true or false, not 1"),
    ("[delivery]\nbackoff_seconds = '10'", "delivery.backoff_seconds: must be a number, not '10'"),
    ("[api]\ntokens = 'abc'", "api.tokens: must be a list"),
    ("[api]\ntokens = [1]", "api.tokens[0]: must be a string, not 1"),
    ("[sms]\nprovider = 'aliyun'", "sms.provider: must be one of 'tencent' or 'twilio', not 'aliyun'"),
    ("[sms.tencent]\nsecret_kye = 'x'", "sms.tencent.secret_kye: unknown key (allowed: callback_token, "
                                         "endpoint, region, sdk_app_id, secret_id, secret_key, sign_name, "
                                         "template_id, timeout_seconds)"),
    ("sms = 'tencent'", "sms: must be a table"),
    ("[voice]\nprovider = 'aliyun'", "voice.provider: must be one of '' or 'twilio', not 'aliyun'"),
    ("[speakers]\nsteps = ['imminent', 'soon']",
     "speakers.steps[1]: unknown step 'soon' (use forecast, warning, imminent)"),
    ("[speakers]\nport = '1883'", "speakers.port: must be a whole number, not '1883'"),
    ("[speakers]\nhostname = 'x'", "speakers.hostname: unknown key"),
])
def test_mistakes_name_the_file_and_the_key(tmp_path: Path, text: str, line: str) -> None:
    got = errors(tmp_path, text)
    assert len(got) == 1 and got[0].startswith(line), got


def test_every_mistake_is_reported_one_per_line(tmp_path: Path) -> None:
    got = errors(tmp_path, "[server]\nport = 'x'\n[sms]\nprovider = 'x'\n[wecom]\nagent_id = 1.5\n")
    assert got == ["server.port: must be a whole number, not 'x'",
                   "sms.provider: must be one of 'tencent' or 'twilio', not 'x'",
                   "wecom.agent_id: must be a whole number, not 1.5"]


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: no such file or folder"):
        load_settings(tmp_path / "nope.toml", env={})
    with pytest.raises(ConfigError, match=r"warnd\.toml: not valid TOML"):
        load_settings(write(tmp_path, "[server\n"), env={})


def test_secrets_come_from_the_environment_and_are_validated_too(tmp_path: Path) -> None:
    p = write(tmp_path, '[sms.tencent]\nsecret_id = "AKID1"\n[database]\nurl = "sqlite:///x.db"\ndurable = false\n')
    s = load_settings(p, env={"WARND_TENCENT_SECRET_KEY": "k", "WARND_API_TOKENS": " a, b ,,",
                              "WARND_DATABASE_URL": "postgresql://warnd@db/warnd", "WARND_MQTT_PASSWORD": "m",
                              "WARND_WECOM_CORP_SECRET": "c", "WARND_WECOM_AES_KEY": "e",
                              "WARND_TWILIO_AUTH_TOKEN": "t"})
    assert (s.sms.tencent.secret_id, s.sms.tencent.secret_key) == ("AKID1", "k")
    assert s.api.tokens == ("a", "b")
    assert (s.database.url, s.database.durable) == ("postgresql://warnd@db/warnd", False)
    assert (s.speakers.password, s.wecom.corp_secret, s.wecom.encoding_aes_key, s.sms.twilio.auth_token) == (
        "m", "c", "e", "t")


def test_settings_are_frozen_and_change_by_copy() -> None:
    s = Settings()
    with pytest.raises(ValueError, match="frozen"):
        s.server.port = 1  # type: ignore[misc]
    t = s.model_copy(update={"server": s.server.model_copy(update={"port": 9000})})
    assert (t.server.port, s.server.port) == (9000, 8080)


def test_speakers_extend_the_one_mqtt_definition() -> None:
    cfg = SpeakersCfg(host="broker", port=8883, tls=True, max_inflight=50)
    assert isinstance(cfg, MqttSettings)
    m = cfg.mqtt("431222")
    assert type(m) is MqttSettings
    assert (m.host, m.port, m.tls, m.max_inflight, m.client_id) == ("broker", 8883, True, 50, "warnd-431222")
    assert SpeakersCfg(client_id="warnd-a").mqtt("431222").client_id == "warnd-a"
    assert set(MqttSettings.model_fields) < set(SpeakersCfg.model_fields)


def test_files_beside_the_settings_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    write(tmp_path / "etc", "# county roles", "roles.toml")
    p = write(tmp_path / "etc", '[policy]\npath = "rules/policy.toml"\n[feeds]\nstations = "stations.toml"\n')
    s = load_settings(p, env={})
    assert s.policy.path == str(tmp_path / "etc" / "rules" / "policy.toml")  # relative to the file
    assert s.policy.roles == str(tmp_path / "etc" / "roles.toml")  # found beside it
    assert s.policy.templates == ""  # not there: the package's default
    assert s.feeds.stations == str(tmp_path / "etc" / "stations.toml")
    assert load_settings(tmp_path / "etc", env={}) == s  # the folder means its warnd.toml


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = tmp_path / "etc-warnd"
    monkeypatch.setattr("warnd.config.files.SYSTEM_DIR", system)
    a = write(tmp_path, "[server]\nport = 1001\n", "a.toml")
    (tmp_path / "b").mkdir()
    write(tmp_path / "b", "[server]\nport = 1002\n")
    assert find_config(None, {}).origin == "built-in defaults"
    assert load_config(None, {})[0] == Settings()
    system.mkdir()
    write(system, "[server]\nport = 1003\n")
    assert load_config(None, {})[0].server.port == 1003
    assert load_config(None, {"WARND_CONFIG": str(tmp_path / "b")})[0].server.port == 1002
    s, where = load_config(str(a), {"WARND_CONFIG": str(tmp_path / "b")})
    assert (s.server.port, where.origin, where.settings_file) == (1001, "--config", a)
    with pytest.raises(ConfigError, match=r"missing\.toml: no such file or folder \(WARND_CONFIG\)"):
        load_config(None, {"WARND_CONFIG": str(tmp_path / "missing.toml")})
