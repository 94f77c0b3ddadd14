"""CAP 1.2 documents for the demo's storm, as the county weather bureau would send them."""

from __future__ import annotations

from datetime import datetime, timedelta
from xml.sax.saxutils import escape

SENDER = "qxj.431222@cma.gov.cn"


def _t(t: datetime) -> str:
    return t.astimezone().replace(microsecond=0).isoformat()


def cap_xml(identifier: str, sent: datetime, onset: datetime, colour_zh: str, headline: str,
            instruction: str, geocodes: list[str], *, msg_type: str = "Alert",
            references: list[tuple[str, datetime]] = (), step: str | None = None,  # type: ignore[assignment]
            status: str = "Actual") -> bytes:
    refs = " ".join(f"{SENDER},{ident},{_t(when)}" for ident, when in references)
    severity = {"蓝色": "Minor", "黄色": "Moderate", "橙色": "Severe", "红色": "Extreme"}[colour_zh]
    geo = "".join(f"<geocode><valueName>行政区划代码</valueName><value>{c}</value></geocode>" for c in geocodes)
    step_param = f"<parameter><valueName>631_step</valueName><value>{step}</value></parameter>" if step else ""
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{escape(identifier)}</identifier>
  <sender>{SENDER}</sender>
  <sent>{_t(sent)}</sent>
  <status>{status}</status>
  <msgType>{msg_type}</msgType>
  <scope>Public</scope>
  {f"<references>{refs}</references>" if refs else ""}
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <event>暴雨{colour_zh}预警</event>
    <urgency>{"Immediate" if step == "imminent" else "Expected"}</urgency>
    <severity>{severity}</severity>
    <certainty>Likely</certainty>
    <eventCode><valueName>GB/T 27962</valueName><value>11B03</value></eventCode>
    <onset>{_t(onset)}</onset>
    <expires>{_t(onset + timedelta(hours=12))}</expires>
    <senderName>沅陵县气象台</senderName>
    <headline>{escape(headline)}</headline>
    <description>{escape(headline)}，请注意防范。</description>
    <instruction>{escape(instruction)}</instruction>
    {step_param}
    <area><areaDesc>沅陵县</areaDesc>{geo}</area>
  </info>
</alert>"""
    return xml.encode("utf-8")
