"""Phone numbers through the phonenumbers library: mobile vs fixed line, E.164."""

from __future__ import annotations

import pytest

from warnd.core.phones import (
    PhoneError,
    classify_stored,
    national_format,
    parse_phone,
    parse_phones,
)


@pytest.mark.parametrize(
    ("given", "e164", "mobile"),
    [
        ("13800000000", "+8613800000000", True),
        ("138 0000 0000", "+8613800000000", True),
        ("+86 138-0000-0000", "+8613800000000", True),
        ("8613800000000", "+8613800000000", True),
        ("0086 13800000000", "+8613800000000", True),
        ("１３８００００００００", "+8613800000000", True),  # full-width digits
        ("19212345678", "+8619212345678", True),
        ("0745-1234567", "+867451234567", False),
        ("(010) 12345678", "+861012345678", False),
        ("+86 745 1234567", "+867451234567", False),
    ],
)
def test_numbers_as_sheets_write_them(given: str, e164: str, mobile: bool) -> None:
    p = parse_phone(given)
    assert (p.e164, p.mobile) == (e164, mobile)


@pytest.mark.parametrize(
    ("given", "code"),
    [
        ("1380000", "invalid"),
        ("12800000000", "invalid"),  # no such mobile prefix
        ("0745 12345678", "invalid"),  # 0745 numbers have 7 digits: the library knows
        ("2345678", "no_area_code"),
        ("8765 4321", "no_area_code"),
        ("1.38E+10", "scientific"),
        ("+1 415 555 0100", "foreign"),
        ("+852 9123 4567", "foreign"),
        ("400-123-4567", "not_personal"),
        ("", "empty"),
    ],
)
def test_bad_numbers_have_a_reason_code(given: str, code: str) -> None:
    with pytest.raises(PhoneError) as e:
        parse_phone(given)
    assert e.value.code == code


def test_a_cell_may_hold_a_mobile_and_a_landline_but_not_two_mobiles() -> None:
    assert [p.e164 for p in parse_phones("13800000000/0745-1234567")] == ["+8613800000000", "+867451234567"]
    assert [p.e164 for p in parse_phones("手机13800000000")] == ["+8613800000000"]
    assert [p.e164 for p in parse_phones("0745-1234567转8001")] == ["+867451234567"]
    assert parse_phones("  ") == []
    with pytest.raises(PhoneError) as e:
        parse_phones("4221234")
    assert e.value.code == "no_area_code"
    for text, code in [("13800000000/13900000000", "several_mobiles"),
                       ("13800000000/0745-1234567/0745-7654321", "too_many")]:
        with pytest.raises(PhoneError) as e:
            parse_phones(text)
        assert e.value.code == code


def test_stored_numbers_are_rechecked_and_shown_as_people_write_them() -> None:
    assert classify_stored("+8613800000000") is not None
    assert classify_stored("+867451234567").mobile is False  # type: ignore[union-attr]
    assert classify_stored("+8612800000000") is None
    assert classify_stored("garbage") is None
    assert national_format("+8613800000000") == "13800000000"
    assert national_format("+867451234567") == "0745-1234567"
    assert national_format("+861012345678") == "010-12345678"
