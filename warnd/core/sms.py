"""How long an SMS is and how many segments (条) it costs. Pure.

A text that fits the GSM 03.38 alphabet is sent 7-bit: 160 characters in one message, 153
per segment once it has to be split (the rest of each segment carries the concatenation
header); the characters of the extension table (€ [ ] { } ^ ~ | \\) take two. Anything else
— every Chinese text — is sent UCS-2: 70 UTF-16 units in one message, 67 per segment when
split (China's carriers count the same way). A provider's signature (Tencent Cloud puts
【签名】 in front of every text) counts towards the length.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = frozenset("\f^{}\\[~]|€")
LIMITS = {"gsm7": (160, 153), "ucs2": (70, 67)}  # (one message, per segment when split)


@dataclass(frozen=True)
class SmsLength:
    encoding: str  # "gsm7" | "ucs2"
    units: int  # characters as the network counts them (septets, or UTF-16 units)
    segments: int  # messages billed and delivered (0 for an empty text)
    per_segment: int  # the limit that applied: one message, or per segment when split

    @property
    def chars(self) -> int:
        return self.units


def sms_length(text: str, signature: str = "") -> SmsLength:
    full = signature + text
    if all(c in GSM_BASIC or c in GSM_EXTENDED for c in full):
        encoding, units = "gsm7", sum(2 if c in GSM_EXTENDED else 1 for c in full)
    else:
        encoding, units = "ucs2", len(full.encode("utf-16-le")) // 2
    single, split = LIMITS[encoding]
    if units == 0:
        return SmsLength(encoding, 0, 0, single)
    if units <= single:
        return SmsLength(encoding, units, 1, single)
    return SmsLength(encoding, units, -(-units // split), split)
