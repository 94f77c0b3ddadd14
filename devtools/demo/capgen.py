"""Warnings for the demo's storm, as the county weather bureau sends them: CAP 1.2, and GB/T
35965.1-2018 as the national release system (12379) forwards them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from xml.sax.saxutils import escape

SENDER = "qxj.431222@cma.gov.cn"
NATIONAL_SENDER = "43122241600000"  # 沅陵县气象台's code in the national release system


def _t(t: datetime) -> str:
    return t.astimezone().replace(microsecond=0).isoformat()


def cap_xml(identifier: str, sent: datetime, onset: datetime, colour_zh: str, headline: str,
            instruction: str, geocodes: list[str], *, msg_type: str = "Alert",
            references: list[tuple[str, datetime]] = (), step: str | None = None,  # type: ignore[assignment]
            status: str = "Actual", sender: str = SENDER) -> bytes:
    refs = " ".join(f"{sender},{ident},{_t(when)}" for ident, when in references)
    severity = {"蓝色": "Minor", "黄色": "Moderate", "橙色": "Severe", "红色": "Extreme"}[colour_zh]
    geo = "".join(f"<geocode><valueName>行政区划代码</valueName><value>{c}</value></geocode>" for c in geocodes)
    step_param = f"<parameter><valueName>631_step</valueName><value>{step}</value></parameter>" if step else ""
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{escape(identifier)}</identifier>
  <sender>{sender}</sender>
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


def gbt_xml(identifier: str, sent: datetime, onset: datetime, colour_zh: str, headline: str, instruction: str,
            geocodes: list[str], *, msg_type: str = "Alert", first: str = "", sender: str = NATIONAL_SENDER) -> bytes:
    """A GB/T 35965.1 warning: no namespace, sendTime with a space, eventType 11B03, the colour
    as a word, per-channel texts, `references` naming the FIRST message of the chain."""
    beijing = timezone(timedelta(hours=8))

    def t(x: datetime) -> str:
        return x.astimezone(beijing).strftime("%Y-%m-%d %H:%M:%S+08:00")

    colour = {"蓝色": "Blue", "黄色": "Yellow", "橙色": "Orange", "红色": "Red"}[colour_zh]
    level = {"蓝色": "IV级/一般", "黄色": "III级/较重", "橙色": "II级/严重", "红色": "I级/特别严重"}[colour_zh]
    sms = f"【沅陵县气象台】{headline}。{instruction}"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert>
  <identifier>{escape(identifier)}</identifier>
  <sender>沅陵县气象台</sender>
  <senderCode>{sender}</senderCode>
  <sendTime>{t(sent)}</sendTime>
  <status>Actual</status>
  <msgType>{msg_type}</msgType>
  <scope>Public</scope>
  <code>
    <method><methodName>SMS</methodName><message>{escape(sms)}</message></method>
    <method><methodName>SPEAKER</methodName><message>{escape(f"沅陵县气象台{headline}。{instruction}")}</message></method>
  </code>
  <secClassification>非涉密</secClassification>
  <note/>
  <references>{escape(first)}</references>
  <info>
    <language>zh-CN</language>
    <eventType>11B03</eventType>
    <urgency>Expected</urgency>
    <severity>{colour}</severity>
    <certainty>Likely</certainty>
    <effective>{t(sent)}</effective>
    <onset>{t(onset)}</onset>
    <expires>{t(onset + timedelta(hours=12))}</expires>
    <senderName>沅陵县气象台</senderName>
    <headline>{escape(f"沅陵县气象台发布暴雨{colour_zh}预警[{level}]")}</headline>
    <description>{escape(headline)}，请注意防范。</description>
    <instruction>{escape(instruction)}</instruction>
    <area>
      <areaDesc>沅陵县</areaDesc>
      <polygon/>
      <geocode>{",".join(geocodes)}</geocode>
    </area>
  </info>
</alert>""".encode()
