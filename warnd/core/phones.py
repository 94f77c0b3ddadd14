"""Mainland China phone numbers: parsing what a roster cell holds, classifying what is stored.

The rules (which prefixes are mobiles, how long a number in area 0745 is) come from the
`phonenumbers` library's metadata, not from our own regular expressions. Errors carry a
stable `code` and the offending text; the words for people are chosen by the caller
(warnd.roster.problems for import reports, the readiness formatter for `warnd check`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

REGION = "CN"
COUNTRY_CODE = 86
_MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)
# VoIP numbers ring like a landline; 400/800/95xxx service numbers are not a person's phone.
_FIXED_TYPES = (PhoneNumberType.FIXED_LINE, PhoneNumberType.VOIP)
_SCIENTIFIC = re.compile(r"\d(\.\d+)?[eE]\+?\d+")
_LOCAL_ONLY = re.compile(r"[2-9]\d{6,7}")  # a landline's local part, area code left off
_NOISE = re.compile(r"[\s\-()（）]+")


class PhoneError(ValueError):
    """`code`: empty | scientific | no_area_code | several_mobiles | too_many | foreign |
    not_personal | invalid."""

    def __init__(self, code: str, text: str):
        super().__init__(f"{code}: {text!r}")
        self.code = code
        self.text = text


@dataclass(frozen=True)
class Phone:
    e164: str  # +8613800000000, +867451234567
    mobile: bool  # False: a fixed line, which SMS can never reach

    @property
    def national(self) -> str:
        """As people write it: 13800000000, 0745-1234567."""
        return national_format(self.e164)


def _classify(number: phonenumbers.PhoneNumber, text: str) -> Phone:
    if number.country_code != COUNTRY_CODE:
        raise PhoneError("foreign", text)
    if not phonenumbers.is_valid_number(number):
        raise PhoneError("invalid", text)
    kind = phonenumbers.number_type(number)
    if kind not in _MOBILE_TYPES and kind not in _FIXED_TYPES:
        raise PhoneError("not_personal", text)
    return Phone(phonenumbers.format_number(number, PhoneNumberFormat.E164), kind in _MOBILE_TYPES)


def parse_phone(text: str) -> Phone:
    """One number as written in a sheet: 13800000000, 138 0000 0000, +86 138-0000-0000,
    0086 13800000000, 0745-1234567, (010) 12345678, +86 745 1234567, full-width digits."""
    raw = unicodedata.normalize("NFKC", text).strip()
    if not raw:
        raise PhoneError("empty", text)
    if _SCIENTIFIC.fullmatch(raw):
        # Excel shows an over-wide number as 1.38E+10, and a CSV export keeps only that.
        raise PhoneError("scientific", raw)
    try:
        number = phonenumbers.parse(raw, REGION)
    except NumberParseException:
        raise PhoneError("invalid", raw) from None
    try:
        return _classify(number, raw)
    except PhoneError as e:
        if e.code == "invalid" and _LOCAL_ONLY.fullmatch(_NOISE.sub("", raw)):
            raise PhoneError("no_area_code", raw) from None
        raise


def parse_phones(text: str) -> list[Phone]:
    """Every number in a cell, in order: "13800000000", or "13800000000/0745-1234567" (a
    mobile and an office line). Two mobiles in one cell are refused (`several_mobiles`):
    that is usually two people in one row. More than two numbers: `too_many`."""
    raw = unicodedata.normalize("NFKC", text).strip()
    if not raw:
        return []
    if _SCIENTIFIC.fullmatch(raw):
        raise PhoneError("scientific", raw)
    found = list(phonenumbers.PhoneNumberMatcher(raw, REGION, leniency=phonenumbers.Leniency.POSSIBLE))
    if len(found) <= 1:
        try:
            return [parse_phone(raw)]
        except PhoneError as e:
            if e.code != "invalid" or not found or found[0].raw_string == raw:
                raise
            # Text around one number: "手机13800000000", "0745-1234567转8001".
            return [_classify(found[0].number, found[0].raw_string)]
    if len(found) > 2:
        raise PhoneError("too_many", raw)
    phones = [_classify(m.number, m.raw_string) for m in found]
    if all(p.mobile for p in phones):
        raise PhoneError("several_mobiles", raw)
    return phones


def classify_stored(e164: str) -> Phone | None:
    """A number already in the database, re-checked (numbers written before this validation,
    or by other tools). None: not a valid mainland mobile or fixed line."""
    try:
        return _classify(phonenumbers.parse(e164, REGION), e164)
    except (NumberParseException, PhoneError):
        return None


def national_format(e164: str) -> str:
    try:
        n = phonenumbers.parse(e164, REGION)
    except NumberParseException:
        return e164
    if n.country_code != COUNTRY_CODE:
        return e164
    digits = phonenumbers.national_significant_number(n)
    if phonenumbers.number_type(n) in _MOBILE_TYPES:
        return digits
    area_len = phonenumbers.length_of_geographical_area_code(n)
    if area_len:
        return f"0{digits[:area_len]}-{digits[area_len:]}"
    return "0" + digits


def mask_phone(number: str) -> str:
    """A resident's number as views and logs show it: 138****5678 (the first three and the
    last four digits of the national number; short numbers keep only their last two)."""
    digits = "".join(c for c in number if c.isdigit())
    if number.startswith("+86"):
        digits = digits[2:]
    if len(digits) >= 11:
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits) >= 8:
        return f"{digits[:3]}{'*' * (len(digits) - 7)}{digits[-4:]}"
    if len(digits) > 2:
        return "*" * (len(digits) - 2) + digits[-2:]
    return "*" * len(digits)
