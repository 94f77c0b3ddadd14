"""roles.toml, templates.toml and stations.toml: the shipped files load, and each mistake is
one line naming the file, the key path and what is wrong. (Policy, vocabulary and sources
have their own tests: test_policy, test_classify, test_feeds_sources.)"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from support.samples import sample
from warnd.config import (
    ConfigError,
    RolesError,
    StationsError,
    TemplateError,
    load_roles,
    load_stations,
    load_templates,
    package_default,
    parse_stations,
)
from warnd.core.domain import Colour, Level
from warnd.core.thresholds import Pair, TLevel


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def only_line(e: pytest.ExceptionInfo[ConfigError], path: Path) -> str:
    lines = str(e.value).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}: "), lines
    return lines[0].removeprefix(f"{path}: ")


# -- roles ------------------------------------------------------------------------------------


def test_shipped_roles() -> None:
    roles = load_roles()
    assert roles["village_secretary"].level is Level.VILLAGE
    assert roles.resolve("村党支部书记") == "village_secretary"
    assert load_roles(package_default("roles.toml")) == roles


@pytest.mark.parametrize(("text", "line"), [
    ('[a]\nlevel = "town"', "a.level: must be one of county, township, village, group, not 'town'"),
    ("[a]\nlabel = 'A'", "a.level: missing required key"),
    ('[a]\nlevel = "county"\nalias = ["x"]', "a.alias: unknown key (allowed: aliases, label, level, superiors)"),
    ('[a]\nlevel = "county"\naliases = "x"', "a.aliases: must be a list of non-empty strings"),
    ('[a]\nlevel = "county"\nsuperiors = ["a", "b"]', "a.superiors[1]: unknown role 'b'"),
    ('a = 1', "a: must be a table"),
    ('[a]\nlevel = "county"\naliases = ["值班"]\n[b]\nlevel = "county"\naliases = ["x", "值班"]',
     "b.aliases[1]: '值班' already names role 'a'"),
    ('[a]\nlevel = "county"\nlabel = "值班员"\n[b]\nlevel = "county"\nlabel = "值班员"',
     "b.label: '值班员' already names role 'a'"),
])
def test_roles_mistakes(tmp_path: Path, text: str, line: str) -> None:
    p = write(tmp_path, "roles.toml", text)
    with pytest.raises(RolesError) as e:
        load_roles(p)
    assert only_line(e, p) == line


# -- templates --------------------------------------------------------------------------------


def test_shipped_templates() -> None:
    t = load_templates()
    assert t.pick("warning", "voice") == "voice.warning"
    assert t.step_label("imminent") == "临灾预警"


def _templates(extra: str = "", drop: str = "") -> str:
    text = package_default("templates.toml").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not (drop and ln.startswith(f"{drop} = "))]
    return "\n".join(lines) + "\n" + extra


@pytest.mark.parametrize(("text", "line"), [
    (_templates(drop="resend"), "sms.resend: missing required template"),
    (_templates("[fax]\nwarning = 'x'\n"), "fax: unknown key (allowed: sms, steps, voice, wecom)"),
    (_templates().replace("[voice]\n", "[voice]\nreply = '{tag}'\n"), "voice.reply: overrides no [sms] template"),
    (_templates().replace("[sms]\n", "[sms]\nextra = '{tga}'\n"), "sms.extra: uses unknown placeholder {tga}"),
    (_templates().replace("[sms]\n", "[sms]\nextra = 'a {tag'\n"),
     "sms.extra: is not a valid template: expected '}' before end of string"),
    (_templates().replace("[sms]\n", "[sms]\nextra = 5\n"), "sms.extra: must be a string"),
    (_templates().replace("[steps]\n", "[steps]\nsoon = '马上'\n"),
     "steps.soon: unknown step (use forecast, warning, imminent)"),
])
def test_templates_mistakes(tmp_path: Path, text: str, line: str) -> None:
    p = write(tmp_path, "templates.toml", text)
    with pytest.raises(TemplateError) as e:
        load_templates(p)
    assert only_line(e, p) == line


# -- stations ---------------------------------------------------------------------------------


def test_example_stations_take_the_defaults() -> None:
    st = load_stations(sample("stations.toml"))
    yl1, yl2 = st.by_id["YL001"], st.by_id["YL002"]
    assert yl1.thresholds.rain[3] == Pair(50, 80) and yl1.thresholds.water_level is None
    assert yl2.thresholds.water_level == Pair(3.5, 4.2)
    assert yl1.thresholds.hold_off == timedelta(minutes=60) and yl1.expires == timedelta(hours=6)
    assert yl1.colours == {TLevel.PREPARE: Colour.ORANGE, TLevel.EVACUATE: Colour.RED}
    assert (yl2.name, yl2.area_desc, yl2.villages) == ("麻溪铺水位站", "麻溪铺镇麻溪铺村", ("431222101200",))


@pytest.mark.parametrize(("raw", "line"), [
    ({"stations": {"X": {"villages": ["4312"], "rain_1h": [50, 30]}}},
     "stations.X.rain_1h: must be [准备转移, 立即转移] with 0 < prepare < evacuate"),
    ({"stations": {"X": {"villages": ["4312"], "level_m": [1]}}},
     "stations.X.level_m: must be [准备转移, 立即转移] with 0 < prepare < evacuate"),
    ({"stations": {"X": {"villages": ["官庄"], "rain_1h": [30, 50]}}},
     "stations.X.villages: must list the administrative codes it guards"),
    ({"stations": {"X": {"rain_1h": [30, 50]}}}, "stations.X.villages: missing required key"),
    ({"stations": {"X": {"villages": ["4312"]}}},
     "stations.X: needs at least one threshold (rain_1h/3h/6h or level_m)"),
    ({"stations": {"X": {"villages": ["4312"], "rain_1h": [30, 50], "clear_ratio": 1.5}}},
     "stations.X.clear_ratio: must be in (0, 1]"),
    ({"stations": {"X": {"villages": ["4312"], "rain_1h": [30, 50], "colours": {"prepare": "pink"}}}},
     "stations.X.colours.prepare: unknown colour 'pink' (use blue, yellow, orange, red)"),
    ({"stations": {"X": {"villages": ["4312"], "rain_2h": [30, 50]}}}, "stations.X.rain_2h: unknown key"),
    ({"defaults": {"hold_off_minutes": "60"}, "stations": {}}, "defaults.hold_off_minutes: must be a number"),
    ({"station": {}}, "station: unknown key (allowed: defaults, stations)"),
])
def test_stations_mistakes(raw: dict, line: str) -> None:
    with pytest.raises(StationsError) as e:
        parse_stations(raw, source="stations.toml")
    got = str(e.value).splitlines()
    assert len(got) == 1 and got[0].startswith(f"stations.toml: {line}"), got


def test_stations_defaults_apply_unless_a_station_sets_its_own() -> None:
    st = parse_stations({"defaults": {"rain_1h": [30, 50], "max_age_minutes": 60},
                         "stations": {"A": {"villages": ["1"]},
                                      "B": {"villages": ["2"], "rain_1h": [10, 20], "max_age_minutes": 5}}})
    a, b = st.by_id["A"].thresholds, st.by_id["B"].thresholds
    assert (a.rain[1], a.max_age) == (Pair(30, 50), timedelta(minutes=60))
    assert (b.rain[1], b.max_age) == (Pair(10, 20), timedelta(minutes=5))


def test_unreadable_files_name_the_path(tmp_path: Path) -> None:
    for load, error in ((load_roles, RolesError), (load_templates, TemplateError), (load_stations, StationsError)):
        with pytest.raises(error, match=rf"^{tmp_path}/absent\.toml: cannot read: No such file"):
            load(tmp_path / "absent.toml")
        assert issubclass(error, ConfigError)
