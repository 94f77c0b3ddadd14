from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from warnd.cap import CapError, parse_cap
from warnd.cap.parser import parse_circle, parse_datetime, parse_polygon
from warnd.core.domain import AlertStatus, MsgType

DATA = Path(__file__).resolve().parents[1] / "data" / "cap"
CST = timezone(timedelta(hours=8))


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def minimal(
    body: str = "", *, head: str = "", ns: str = "urn:oasis:names:tc:emergency:cap:1.2"
) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<alert xmlns="{ns}">'
        "<identifier>T-1</identifier><sender>test@warnd</sender>"
        "<sent>2024-06-15T08:05:00+08:00</sent><status>Actual</status>"
        f"<msgType>Alert</msgType><scope>Public</scope>{head}{body}</alert>"
    ).encode()


def info(area: str = "", extra: str = "") -> str:
    return (
        "<info><category>Met</category><event>暴雨黄色预警</event><urgency>Future</urgency>"
        f"<severity>Moderate</severity><certainty>Likely</certainty>{extra}{area}</info>"
    )


# -- valid documents -----------------------------------------------------------------------


def test_cma_geocode_alert() -> None:
    msg = parse_cap(load("cma_rainstorm_geocode.xml"))
    assert msg.identifier == "43122241600000_20240615080500"
    assert msg.sender == "431222_QXT@hn.cma.gov.cn"
    assert msg.sent == datetime(2024, 6, 15, 8, 5, tzinfo=CST)
    assert msg.status is AlertStatus.ACTUAL
    assert msg.msg_type is MsgType.ALERT
    assert msg.scope == "Public"
    assert msg.references == ()
    assert msg.version == "1.2"
    assert [i.language for i in msg.infos] == ["zh-CN", "en-US"]
    zh = msg.infos[0]
    assert zh.categories == ("Met",)
    assert zh.event == "暴雨黄色预警"
    assert (zh.urgency, zh.severity, zh.certainty) == ("Future", "Moderate", "Likely")
    assert zh.event_codes == (("预警类型", "暴雨"),)
    assert zh.sender_name == "沅陵县气象台"
    assert zh.onset == datetime(2024, 6, 15, 11, 0, tzinfo=CST)
    assert zh.expires == datetime(2024, 6, 16, 8, 5, tzinfo=CST)
    assert zh.headline == "沅陵县气象台发布暴雨黄色预警信号"
    assert zh.instruction is not None and zh.instruction.startswith("1.政府")
    assert len(zh.areas) == 1
    area = zh.areas[0]
    assert area.area_desc == "沅陵县"
    assert area.geocodes == (("行政区划代码", "431222000000"),)
    assert area.polygons == () and area.circles == ()


def test_update_carries_reference_and_parameter() -> None:
    msg = parse_cap(load("cma_rainstorm_update.xml"))
    assert msg.msg_type is MsgType.UPDATE
    assert msg.references == (
        (
            "431222_QXT@hn.cma.gov.cn",
            "43122241600000_20240615080500",
            datetime(2024, 6, 15, 8, 5, tzinfo=CST),
        ),
    )
    # The reference triple matches the key of the original alert.
    original = parse_cap(load("cma_rainstorm_geocode.xml"))
    assert msg.references[0] == original.key
    assert msg.infos[0].parameters == (("预警级别", "橙色"),)
    assert [g for _, g in msg.infos[0].areas[0].geocodes] == ["431222100000", "431222200000"]


def test_cancel_with_two_references() -> None:
    msg = parse_cap(load("cma_rainstorm_cancel.xml"))
    assert msg.msg_type is MsgType.CANCEL
    assert [r[1] for r in msg.references] == [
        "43122241600000_20240615080500",
        "43122241600000_20240615103000",
    ]
    assert msg.note == "降雨已明显减弱，解除暴雨预警。"


def test_polygon() -> None:
    msg = parse_cap(load("polygon_thunderstorm.xml"))
    area = msg.infos[0].areas[0]
    assert area.polygons == (
        ((28.10, 110.10), (28.10, 110.30), (28.30, 110.30), (28.30, 110.10), (28.10, 110.10)),
    )
    # No <language>: the CAP default applies.
    assert msg.infos[0].language == "en-US"
    assert msg.infos[0].event_codes == (("SAME", "SVR"),)


def test_circle_and_two_categories() -> None:
    msg = parse_cap(load("circle_flash_flood.xml"))
    i = msg.infos[0]
    assert i.categories == ("Geo", "Met")
    assert i.areas[0].circles == ((28.60, 110.30, 5.0),)
    assert i.parameter("631_STEP") == "1"
    assert i.parameter("预警级别") == "Ⅰ级"


def test_exercise_status() -> None:
    msg = parse_cap(load("exercise_drill.xml"))
    assert msg.status is AlertStatus.EXERCISE
    assert msg.note is not None and "演练" in msg.note


def test_cap11_namespace_and_very_likely() -> None:
    msg = parse_cap(load("earthquake_update_cap11.xml"))
    assert msg.version == "1.1"
    assert msg.sent == datetime(2003, 6, 11, 20, 56, tzinfo=timezone(timedelta(hours=-7)))
    assert msg.infos[0].certainty == "Likely"
    assert msg.infos[0].areas[0].circles == ((32.9525, -115.5527, 0.0),)
    assert msg.references[0][:2] == ("trinet@caltech.edu", "TRI13970876.1")


def test_resource_and_unknown_elements_are_ignored() -> None:
    msg = parse_cap(load("homeland_security_advisory.xml"))
    assert msg.infos[0].parameters == (("HSAS", "ORANGE"),)
    assert msg.infos[0].areas[0].area_desc == "U.S. nationwide and interests worldwide"


def test_alert_without_info_is_valid() -> None:
    msg = parse_cap(minimal())
    assert msg.infos == ()


def test_gb18030_declared_gb2312_is_transcoded() -> None:
    # Chinese feeds declare GB2312 and then use GBK-only characters (here 堃).
    text = minimal(info(area="<area><areaDesc>堃村</areaDesc></area>")).decode()
    data = text.replace('encoding="UTF-8"', 'encoding="GB2312"').encode("gb18030")
    msg = parse_cap(data)
    assert msg.infos[0].event == "暴雨黄色预警"
    assert msg.infos[0].areas[0].area_desc == "堃村"


def test_undecodable_declared_encoding() -> None:
    data = minimal().replace(b'encoding="UTF-8"', b'encoding="GB2312"') + b"\xff\xff"
    with pytest.raises(CapError) as e:
        parse_cap(data)
    assert e.value.field == "xml"


def test_unknown_declared_encoding() -> None:
    data = minimal().replace(b'encoding="UTF-8"', b'encoding="x-no-such-codec"')
    with pytest.raises(CapError) as e:
        parse_cap(data)
    assert e.value.field == "xml"
    assert "x-no-such-codec" in e.value.detail


def test_bytearray_accepted_str_refused() -> None:
    assert parse_cap(bytearray(minimal())).identifier == "T-1"  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_cap(minimal().decode())  # type: ignore[arg-type]


# -- refused documents ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("bad_missing_sent.xml", "alert.sent"),
        ("bad_sent_no_timezone.xml", "alert.sent"),
        ("bad_enum_status.xml", "alert.status"),
        ("bad_enum_severity.xml", "info[0].severity"),
        ("bad_polygon_not_closed.xml", "info[0].area[1].polygon[0]"),
        ("bad_polygon_swapped.xml", "info[0].area[0].polygon[0]"),
        ("bad_circle.xml", "info[0].area[0].circle[0]"),
        ("bad_namespace_cap10.xml", "xmlns"),
        ("bad_root_element.xml", "alert"),
        ("not_xml.xml", "xml"),
        ("truncated.xml", "xml"),
        ("update_without_references.xml", "alert.references"),
        ("billion_laughs.xml", "xml"),
        ("xxe_file.xml", "xml"),
        ("xxe_external_dtd.xml", "xml"),
    ],
)
def test_refused_files(name: str, field: str) -> None:
    with pytest.raises(CapError) as e:
        parse_cap(load(name))
    assert e.value.field == field
    assert isinstance(e.value, ValueError)
    assert str(e.value).startswith(f"{field}: ")


def test_billion_laughs_refused_quickly_and_unexpanded() -> None:
    import time

    t0 = time.perf_counter()
    with pytest.raises(CapError) as e:
        parse_cap(load("billion_laughs.xml"))
    assert time.perf_counter() - t0 < 1.0
    assert "DTD" in e.value.detail


def test_xxe_never_reads_the_file() -> None:
    with pytest.raises(CapError) as e:
        parse_cap(load("xxe_file.xml"))
    assert "root:" not in str(e.value)


def test_internal_entity_without_doctype_is_refused() -> None:
    # An undeclared entity reference is simply not well-formed.
    with pytest.raises(CapError) as e:
        parse_cap(minimal(head="<note>&foo;</note>"))
    assert e.value.field == "xml"


def test_oversized_refused_before_parsing() -> None:
    # Valid XML padded past the limit: refused on size alone, never parsed.
    padding = b"<!--" + b"x" * (5 * 1024 * 1024) + b"-->"
    data = minimal() + padding
    with pytest.raises(CapError) as e:
        parse_cap(data)
    assert e.value.field == "size"
    assert str(5 * 1024 * 1024) in e.value.detail


def test_several_hundred_kb_embedded_resource_accepted() -> None:
    deref = "A" * (600 * 1024)  # base64 audio as provincial feeds embed it
    resource = (
        "<resource><resourceDesc>语音</resourceDesc><mimeType>audio/mpeg</mimeType>"
        f"<derefUri>{deref}</derefUri></resource>"
    )
    msg = parse_cap(minimal(info(extra=resource)))
    assert msg.infos[0].event == "暴雨黄色预警"


def test_custom_max_bytes() -> None:
    data = minimal()
    assert parse_cap(data, max_bytes=len(data)).identifier == "T-1"
    with pytest.raises(CapError) as e:
        parse_cap(data, max_bytes=len(data) - 1)
    assert e.value.field == "size"


def test_empty_document() -> None:
    with pytest.raises(CapError) as e:
        parse_cap(b"  \n")
    assert e.value.field == "xml"


def test_no_namespace_refused() -> None:
    with pytest.raises(CapError) as e:
        parse_cap(minimal(ns="").replace(b' xmlns=""', b""))
    assert e.value.field == "xmlns"
    assert "no namespace" in e.value.detail


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (b"<identifier>T-1</identifier>", b"", "alert.identifier"),
        (b"<identifier>T-1</identifier>", b"<identifier>T 1</identifier>", "alert.identifier"),
        (b"<identifier>T-1</identifier>", b"<identifier>T,1</identifier>", "alert.identifier"),
        (b"<identifier>T-1</identifier>", b"<identifier>  </identifier>", "alert.identifier"),
        (b"<sender>test@warnd</sender>", b"", "alert.sender"),
        (b"<status>Actual</status>", b"", "alert.status"),
        (b"<msgType>Alert</msgType>", b"", "alert.msgType"),
        (b"<msgType>Alert</msgType>", b"<msgType>Alarm</msgType>", "alert.msgType"),
        (b"<scope>Public</scope>", b"", "alert.scope"),
        (b"<scope>Public</scope>", b"<scope>public</scope>", "alert.scope"),
        (
            b"<scope>Public</scope>",
            b"<scope>Public</scope><scope>Private</scope>",
            "alert.scope",
        ),
        (b"+08:00</sent>", b"</sent>", "alert.sent"),
        (b"2024-06-15T08:05:00+08:00", b"2024-06-31T08:05:00+08:00", "alert.sent"),
    ],
)
def test_alert_field_errors(old: bytes, new: bytes, field: str) -> None:
    data = minimal()
    assert old in data
    with pytest.raises(CapError) as e:
        parse_cap(data.replace(old, new, 1))
    assert e.value.field == field


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("<category>Met</category>", "", "info[0].category"),
        ("<category>Met</category>", "<category>Weather</category>", "info[0].category[0]"),
        ("<event>暴雨黄色预警</event>", "", "info[0].event"),
        ("<urgency>Future</urgency>", "", "info[0].urgency"),
        ("<urgency>Future</urgency>", "<urgency>Soon</urgency>", "info[0].urgency"),
        ("<severity>Moderate</severity>", "", "info[0].severity"),
        ("<certainty>Likely</certainty>", "", "info[0].certainty"),
        ("<certainty>Likely</certainty>", "<certainty>Sure</certainty>", "info[0].certainty"),
    ],
)
def test_info_field_errors(old: str, new: str, field: str) -> None:
    body = info()
    assert old in body
    with pytest.raises(CapError) as e:
        parse_cap(minimal(info() + body.replace(old, new, 1)))
    # The second <info> is the broken one: the path says so.
    assert e.value.field == field.replace("info[0]", "info[1]")


def test_info_dates_validated() -> None:
    with pytest.raises(CapError) as e:
        parse_cap(minimal(info(extra="<expires>2024-06-16</expires>")))
    assert e.value.field == "info[0].expires"


def test_area_desc_required() -> None:
    with pytest.raises(CapError) as e:
        parse_cap(
            minimal(
                info(
                    area="<area><geocode><valueName>a</valueName><value>1</value></geocode></area>"
                )
            )
        )
    assert e.value.field == "info[0].area[0].areaDesc"


def test_geocode_value_name_required() -> None:
    area = "<area><areaDesc>x</areaDesc><geocode><value>431222</value></geocode></area>"
    with pytest.raises(CapError) as e:
        parse_cap(minimal(info(area=area)))
    assert e.value.field == "info[0].area[0].geocode[0].valueName"


def test_cancel_without_references() -> None:
    data = minimal().replace(b"<msgType>Alert</msgType>", b"<msgType>Cancel</msgType>")
    with pytest.raises(CapError) as e:
        parse_cap(data)
    assert e.value.field == "alert.references"
    assert "Cancel" in e.value.detail


def test_malformed_references() -> None:
    head = "<references>test@warnd,T-0</references>"
    with pytest.raises(CapError) as e:
        parse_cap(minimal(head=head))
    assert e.value.field == "alert.references"
    head = "<references>test@warnd,T-0,yesterday</references>"
    with pytest.raises(CapError) as e:
        parse_cap(minimal(head=head))
    assert e.value.field == "alert.references"


# -- value syntax --------------------------------------------------------------------------


def test_datetime_forms() -> None:
    assert parse_datetime("2024-06-15T00:05:00-00:00", "f") == datetime(
        2024, 6, 15, 0, 5, tzinfo=UTC
    )
    assert parse_datetime("2024-06-15T00:05:00Z", "f") == datetime(2024, 6, 15, 0, 5, tzinfo=UTC)
    assert parse_datetime("2024-06-15T08:05:00.250+08:00", "f").microsecond == 250000
    for bad in ("2024-06-15T08:05+08:00", "2024-06-15T08:05:00", "20240615T080500+0800"):
        with pytest.raises(CapError):
            parse_datetime(bad, "f")


def test_polygon_syntax() -> None:
    ring = parse_polygon("28.1, 110.1 28.1,110.3\n28.3,110.3 28.1,110.1", "p")
    assert ring[0] == ring[-1] == (28.1, 110.1)
    with pytest.raises(CapError, match="at least 4"):
        parse_polygon("28.1,110.1 28.2,110.2 28.1,110.1", "p")
    with pytest.raises(CapError, match="not a lat,lon pair"):
        parse_polygon("28.1;110.1 28.1,110.3 28.3,110.3 28.1;110.1", "p")
    with pytest.raises(CapError, match="longitude"):
        parse_polygon("28.1,190 28.1,110.3 28.3,110.3 28.1,190", "p")
    with pytest.raises(CapError):
        parse_polygon("", "p")


def test_circle_syntax() -> None:
    assert parse_circle("28.6,110.3 0.5", "c") == (28.6, 110.3, 0.5)
    with pytest.raises(CapError, match="negative"):
        parse_circle("28.6,110.3 -1", "c")
    with pytest.raises(CapError, match="latitude"):
        parse_circle("95,110.3 1", "c")
    with pytest.raises(CapError):
        parse_circle("28.6 110.3 1", "c")
