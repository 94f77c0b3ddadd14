"""Parse an official's SMS reply: is it a confirmation (应), and for which call?

Officials answer from feature phones, full-width keyboards and voice input, so the text is
NFKC-normalised, case-folded and stripped of punctuation, symbols (emoji) and whitespace
before matching. Matching is strict where it counts: a false "confirmed" would hide a silent
official. The whole reply must be a keyword (and/or a short code) — or, so that "收到，谢谢"
and "收到！马上组织转移" count as the 应 they are, its first segment must be, with the rest
plain words: no negation (不/没/未/无/否) and no further code-like text (a second or
malformed code stays ambiguous).

Short codes identify the call when one person has several open calls. They use an alphabet
without look-alikes (no 0/O, 1/I/L), so the keyword "1" can never be mistaken for part of
a code.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
MIN_CODE_LENGTH = 4
MAX_CODE_LENGTH = 12  # calls.short_code column width
_BASE = len(ALPHABET)
_DIGIT = {c: i for i, c in enumerate(ALPHABET)}

# Longest first, so "已收到" is not read as "已" + "收到".
CONFIRM_WORDS = tuple(
    sorted(("1", "收到", "确认", "已收到", "收到了", "好的收到"), key=len, reverse=True)
)
# Anything longer than the longest keyword + code cannot be a confirmation.
_MAX_REPLY = max(map(len, CONFIRM_WORDS)) + MAX_CODE_LENGTH


@dataclass(frozen=True)
class Reply:
    confirm: bool
    short_code: str | None


def short_code_for(call_id: int) -> str:
    """Base-31 in ALPHABET, left-padded to MIN_CODE_LENGTH ("2" is the zero digit)."""
    if call_id < 0:
        raise ValueError("call id must not be negative")
    digits: list[str] = []
    n = call_id
    while n:
        n, r = divmod(n, _BASE)
        digits.append(ALPHABET[r])
    code = "".join(reversed(digits)).rjust(MIN_CODE_LENGTH, ALPHABET[0])
    if len(code) > MAX_CODE_LENGTH:
        raise ValueError("call id too large for a short code")
    return code


def is_short_code(s: str) -> bool:
    """True for a well-formed code (case-insensitive); says nothing about whether a call has it."""
    s = s.upper()
    return MIN_CODE_LENGTH <= len(s) <= MAX_CODE_LENGTH and all(c in _DIGIT for c in s)


def call_id_from_short_code(s: str) -> int | None:
    if not is_short_code(s):
        return None
    n = 0
    for c in s.upper():
        n = n * _BASE + _DIGIT[c]
    return n


def normalise(text: str) -> str:
    """NFKC, upper-case, and keep only letters, digits and marks (drops punctuation,
    symbols, emoji, spaces and control characters)."""
    t = unicodedata.normalize("NFKC", text).upper()
    return "".join(c for c in t if unicodedata.category(c)[0] in "LNM")


_NO = Reply(confirm=False, short_code=None)


def parse_reply(text: str) -> Reply:
    # Normalise all of it: truncating first could cut off a trailing "不" after padding.
    t = normalise(text)
    if not t or len(t) > _MAX_REPLY:
        return _NO
    if t in CONFIRM_WORDS:
        return Reply(confirm=True, short_code=None)
    code: str | None = None
    if is_short_code(t):
        code = t
    else:
        for word in CONFIRM_WORDS:
            if t.startswith(word) and is_short_code(t[len(word) :]):
                code = t[len(word) :]
                break
            if t.endswith(word) and is_short_code(t[: -len(word)]):
                code = t[: -len(word)]
                break
    if code is None:
        return _leading_confirmation(text)
    # The code must have been typed as one unbroken run: "K7F3 K7F4" (two codes) must not
    # merge into the well-formed but wrong code "K7F3K7F4".
    if not any(code in run for run in _runs(text)):
        return _NO
    return Reply(confirm=True, short_code=code)


def _runs(text: str) -> list[str]:
    """Maximal runs of letters/digits/marks after NFKC and upper-casing."""
    runs: list[str] = []
    cur: list[str] = []
    for c in unicodedata.normalize("NFKC", text).upper():
        if unicodedata.category(c)[0] in "LNM":
            cur.append(c)
        elif cur:
            runs.append("".join(cur))
            cur = []
    if cur:
        runs.append("".join(cur))
    return runs


NEGATIONS = ("不", "没", "未", "无", "否")
_MAX_SENTENCE = 60  # normalised characters: a short sentence, not a pasted message


def _leading_confirmation(text: str) -> Reply:
    """A reply that opens with a confirmation, e.g. "收到，谢谢" or "收到 K7F3，马上转移"."""
    runs = _runs(text)
    if len(runs) < 2 or sum(map(len, runs)) > _MAX_SENTENCE:
        return _NO
    head, rest = runs[0], runs[1:]
    if rest and is_short_code(rest[0]) and head in CONFIRM_WORDS:
        head, rest = head + rest[0], rest[1:]
    tail = "".join(rest)
    if not tail or any(n in tail for n in NEGATIONS) or any(c.isascii() and c.isalnum() for c in tail):
        return _NO
    return parse_reply(head) if head != text else _NO


# Opt-out and opt-in words for public lists (回复TD退订). Only the whole reply counts: "不要退订"
# or a sentence mentioning 退订 is not an instruction.
OPT_OUT_WORDS = frozenset({"TD", "T", "退订", "退定", "取消订阅", "退订TD", "TD退订", "N", "STOP", "UNSUBSCRIBE"})
OPT_IN_WORDS = frozenset({"订阅", "DY", "恢复订阅", "重新订阅"})


def parse_subscription(text: str) -> bool | None:
    """False: the sender opts out of public messages; True: opts back in; None: neither."""
    t = normalise(text)
    if t in OPT_OUT_WORDS:
        return False
    if t in OPT_IN_WORDS:
        return True
    return None
