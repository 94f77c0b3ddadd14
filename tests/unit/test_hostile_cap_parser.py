"""Hostile input to the CAP parser: odd codecs, contradicting byte-order marks, XML bombs,
XInclude, deep nesting, several errors at once, and fuzzing. The parser may refuse anything,
but only with its own CapError naming the problem, never with another exception."""

from __future__ import annotations

import codecs
import encodings.aliases
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from warnd.cap import CapError, parse_cap
from warnd.cap.parser import CHARSETS

DATA = Path(__file__).resolve().parents[1] / "data" / "cap"
GOOD = (DATA / "cma_rainstorm_geocode.xml").read_bytes()
BODY = GOOD.split(b"?>", 1)[1]  # the document after its XML declaration
CODEC_NAMES = sorted(set(encodings.aliases.aliases) | set(encodings.aliases.aliases.values()))


def declared(encoding: str, body: bytes = BODY) -> bytes:
    return f'<?xml version="1.0" encoding="{encoding}"?>'.encode() + body


def refused(data: bytes) -> CapError:
    with pytest.raises(CapError) as e:
        parse_cap(data)
    return e.value


# -- codecs that are not character encodings (issue 10, part 4) ----------------------------

TRANSFORMS = ["base64", "hex", "zlib", "bz2", "uu", "quopri", "rot13", "unicode_escape",
              "raw_unicode_escape", "punycode", "idna", "utf-7", "utf_8_sig"]


@pytest.mark.parametrize("encoding", TRANSFORMS)
def test_transform_codec_is_refused_by_name(encoding: str) -> None:
    e = refused(declared(encoding))
    assert e.field == "xml"
    assert f"encoding {encoding!r} is not a character encoding" in e.detail


@pytest.mark.parametrize("encoding", TRANSFORMS)
def test_transform_codec_declared_inside_utf16_is_refused_by_name(encoding: str) -> None:
    # The declaration itself in UTF-16: expat would otherwise ask Python for the codec.
    data = f'<?xml version="1.0" encoding="{encoding}"?>'.encode("utf-16") + BODY.decode().encode("utf-16-le")
    e = refused(data)
    assert encoding in e.detail and "not a character encoding" in e.detail


def test_unicode_escape_cannot_smuggle_markup() -> None:
    # Declared unicode_escape would turn "\u003c!DOCTYPE" into "<!DOCTYPE" after the checks.
    smuggled = BODY.replace(b"<alert ", b"\\u003c!DOCTYPE alert [<!ENTITY x 'y'>]><alert ", 1)
    assert "not a character encoding" in refused(declared("unicode_escape", smuggled)).detail


@pytest.mark.parametrize(("encoding", "why"), [
    ("utf 8", "malformed encoding name"),
    ("x-no-such", "unknown encoding 'x-no-such'"),
    ("mbcs", "unknown encoding 'mbcs'"),
])
def test_malformed_or_unknown_encoding_names(encoding: str, why: str) -> None:
    assert why in refused(declared(encoding)).detail


def test_declared_utf16_on_an_8bit_document_is_a_contradiction() -> None:
    e = refused(declared("UTF-16"))
    assert "contradicts" in e.detail and "UTF-16" in e.detail


def test_declared_gbk_inside_a_utf16_document_is_a_contradiction() -> None:
    data = '<?xml version="1.0" encoding="GBK"?>'.encode("utf-16") + BODY.decode().encode("utf-16-le")
    assert "contradicts" in refused(data).detail


@pytest.mark.parametrize("form", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"])
def test_real_unicode_forms_are_read(form: str) -> None:
    name = {"utf-8-sig": "UTF-8"}.get(form, form.upper())
    text = declared(name).decode()
    data = text.encode(form)
    if form in ("utf-16-le", "utf-16-be"):  # no BOM: XML appendix F sniffing
        data = text.encode(form)
    assert parse_cap(data).identifier == "43122241600000_20240615080500"


def test_invalid_utf8_says_utf8_and_where() -> None:
    data = GOOD.replace("暴雨黄色预警".encode(), b"\xff\xfe\xfd", 1)
    e = refused(data)
    assert e.field == "xml"
    at = data.index(b"\xff")
    assert "not valid UTF-8" in e.detail and f"at byte {at}" in e.detail


def test_invalid_utf8_without_declaration_says_utf8() -> None:
    e = refused(BODY.lstrip().replace("沅陵".encode(), b"\xc3\x28", 1))
    assert "UTF-8" in e.detail


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_every_python_codec_name_is_read_or_refused_cleanly(name: str) -> None:
    try:
        parse_cap(declared(name))
    except CapError as e:
        assert e.field == "xml"
    else:  # accepted: only a character encoding on the list (8-bit ones read any bytes)
        assert codecs.lookup(name).name in CHARSETS


# -- XML attacks ---------------------------------------------------------------------------

def test_billion_laughs_in_utf16_is_refused_quickly() -> None:
    bomb = (DATA / "billion_laughs.xml").read_text(encoding="utf-8").replace("UTF-8", "UTF-16")
    t0 = time.perf_counter()
    e = refused(bomb.encode("utf-16"))
    assert time.perf_counter() - t0 < 10  # refused, never expanded (an expansion takes minutes)
    assert "DTD" in e.detail


def test_parameter_entity_and_external_dtd_are_refused() -> None:
    doc = ('<?xml version="1.0"?><!DOCTYPE alert SYSTEM "http://127.0.0.1:9/evil.dtd">'
           + BODY.decode().split("?>", 1)[-1])
    assert "DTD" in refused(doc.encode()).detail
    doc = ('<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>'
           + BODY.decode())
    assert "DTD" in refused(doc.encode()).detail


def test_xinclude_is_not_processed() -> None:
    include = b'<note><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd" parse="text"/></note>'
    msg = parse_cap(GOOD.replace(b"<scope>Public</scope>", b"<scope>Public</scope>" + include, 1))
    assert msg.note is None  # the include stays an unknown, empty child: nothing is fetched


def test_deep_nesting_is_refused_or_read_without_crashing() -> None:
    depth = 200_000
    doc = BODY.replace(b"<scope>Public</scope>", b"<scope>Public</scope>" + b"<x>" * depth + b"</x>" * depth, 1)
    t0 = time.perf_counter()
    msg = parse_cap(declared("UTF-8", doc))  # unknown elements are ignored, whatever their depth
    assert msg.identifier and time.perf_counter() - t0 < 30  # read in linear time, not hung


def test_processing_instructions_and_comments_change_nothing() -> None:
    doc = GOOD.replace(b"<scope>", b"<?php system('id'); ?><!-- <scope>Private</scope> --><scope>", 1)
    assert parse_cap(doc).scope == "Public"


# -- several errors at once (issue 10, part 7) ---------------------------------------------

def test_all_independent_field_errors_are_reported() -> None:
    doc = (GOOD.replace(b"<status>Actual</status>", b"<status>Real</status>")
           .replace(b"<scope>Public</scope>", b"<scope>Everyone</scope>")
           .replace(b"<urgency>Future</urgency>", b"<urgency>Soon</urgency>", 1)
           .replace(b"2024-06-15T08:05:00+08:00</sent>", b"2024-06-15 08:05</sent>"))
    e = refused(doc)
    fields = [f for f, _ in e.errors]
    assert fields == ["alert.sent", "alert.status", "alert.scope", "info[0].urgency"]
    assert e.field == "alert.sent"
    for f in fields[1:]:
        assert f"; {f}: " in e.detail
    assert "'Real'" in e.detail and "'Everyone'" in e.detail and "'Soon'" in e.detail


def test_a_single_error_reads_as_before() -> None:
    e = refused(GOOD.replace(b"<status>Actual</status>", b"<status>Real</status>"))
    assert e.errors == (("alert.status", e.detail),)
    assert str(e).startswith("alert.status: 'Real' is not one of")


def test_error_list_is_bounded() -> None:
    bad = b"<polygon>1,1 2,2</polygon>" * 500
    doc = GOOD.replace(b"<areaDesc>", bad + b"<areaDesc>", 1)
    e = refused(doc)
    assert len(e.errors) == 20 and e.detail.endswith("and 480 more")


# -- fuzzing -------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def must_refuse_cleanly(data: bytes) -> None:
    try:
        parse_cap(data)
    except CapError as e:
        assert e.field and e.detail and e.errors


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    must_refuse_cleanly(data)


@FUZZ
@given(st.sampled_from(CODEC_NAMES + TRANSFORMS), st.sampled_from(["utf-8", "utf-16", "utf-16-le", "utf-32", "gb18030"]))
def test_fuzz_declared_codec_in_any_unicode_form(name: str, form: str) -> None:
    must_refuse_cleanly(f'<?xml version="1.0" encoding="{name}"?>'.encode(form) + BODY.decode().encode(form))


@FUZZ
@given(st.integers(0, len(GOOD)), st.integers(0, 64), st.binary(max_size=64))
def test_fuzz_splices_into_a_valid_message(at: int, cut: int, insert: bytes) -> None:
    must_refuse_cleanly(GOOD[:at] + insert + GOOD[at + cut:])


FRAGMENTS = [b"<!DOCTYPE a>", b"<!ENTITY x 'y'>", b"&x;", b"&#0;", b"&#xD800;", b"<![CDATA[", b"]]>",
             b"<?xml version='1.0'?>", b"<info>", b"</info>", b"<area>", b"<polygon>1,2 3,4</polygon>",
             b"<circle>91,0 -1</circle>", b"<sent>9999-99-99T99:99:99+99:99</sent>", b"\x00", b"\xef\xbb\xbf",
             b"\xff\xfe", b"<references>a,b,c</references>", b'xmlns:x="urn:x"', b"<msgType>Cancel</msgType>"]


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(GOOD)), st.sampled_from(FRAGMENTS)), max_size=6))
def test_fuzz_xml_fragments_into_a_valid_message(edits: list[tuple[int, bytes]]) -> None:
    doc = GOOD
    for at, frag in sorted(edits, reverse=True):
        doc = doc[:at] + frag + doc[at:]
    must_refuse_cleanly(doc)


@FUZZ
@given(st.text(max_size=300))
def test_fuzz_text_in_every_field(text: str) -> None:
    from xml.sax.saxutils import escape

    value = escape("".join(c for c in text if c.isprintable())).encode()
    for tag in (b"identifier", b"sender", b"sent", b"status", b"msgType", b"scope", b"urgency", b"areaDesc"):
        start, end = GOOD.find(b"<" + tag + b">"), GOOD.find(b"</" + tag + b">")
        if start >= 0:
            must_refuse_cleanly(GOOD[:start + len(tag) + 2] + value + GOOD[end:])
