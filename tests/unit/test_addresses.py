"""Which number each channel dials: a landline-only official is called, never texted."""

from __future__ import annotations

from warnd.core.domain import PersonView
from warnd.engine.messages import address_for


def official(phone: str, phone2: str | None = None, wecom: str | None = None) -> PersonView:
    return PersonView(id=1, name="赵敏", phone=phone, role="duty_officer", region_code="430999",
                      phone2=phone2, wecom_userid=wecom)


def test_sms_goes_to_the_mobile_only() -> None:
    assert address_for(official("+8613800000001", "+867451234567"), "sms") == "+8613800000001"
    assert address_for(official("", "+867451234567"), "sms") == ""  # no mobile: no SMS (skipped)


def test_voice_prefers_the_mobile_and_falls_back_to_the_second_number() -> None:
    assert address_for(official("+8613800000001", "+867451234567"), "voice") == "+8613800000001"
    assert address_for(official("", "+867451234567"), "voice") == "+867451234567"
    assert address_for(official("", None), "voice") == ""


def test_wecom_uses_the_userid() -> None:
    assert address_for(official("+8613800000001", wecom="zhaomin"), "wecom") == "zhaomin"
    assert address_for(official("+8613800000001"), "wecom") == ""
