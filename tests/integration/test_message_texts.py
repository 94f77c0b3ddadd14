"""What an official's phone shows (issue 12, part 6): sender once, the area in words and the
policy's 防御指引 when the warning carries no <instruction>."""

from __future__ import annotations

from datetime import timedelta

from devtools.demo.capgen import cap_xml
from support.phones import REGIONS, T0, VILLAGE, county
from warnd.config import load_policy
from warnd.db.models import Region

# Another village and township: 辰龙关村 is neither the whole township nor the whole county.
TWO_TOWNSHIPS = [*REGIONS, Region(code="431222100201", name="黄土村", level="village", parent_code="431222100"),
                 Region(code="431222101", name="马底驿乡", level="township", parent_code="431222")]


async def test_an_sms_without_instruction_says_where_and_what_to_do(db_url: str) -> None:
    cap = cap_xml("RS-9", T0, T0 + timedelta(minutes=30), "红色", "沅陵县气象台发布暴雨红色预警信号", "",
                  [VILLAGE], step="imminent")
    async with county(db_url, regions=TWO_TOWNSHIPS) as c:
        await c.warn(cap)
        sms = await c.phone("+8613900000001").expect_sms("临灾预警")
    guidance = load_policy(None).guidance_for("rainstorm", "imminent")
    assert sms.body.count("沅陵县气象台") == 1, sms.body
    assert "沅陵县气象台发布暴雨红色预警信号，影响官庄镇辰龙关村。" in sms.body
    assert guidance in sms.body
