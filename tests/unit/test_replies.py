from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warnd.core.replies import (
    ALPHABET,
    Reply,
    call_id_from_short_code,
    is_short_code,
    normalise,
    parse_reply,
    short_code_for,
)

# ------------------------------------------------------------------ short codes


def test_alphabet_has_no_lookalikes() -> None:
    assert len(ALPHABET) == len(set(ALPHABET)) == 31
    assert not set("01OIL") & set(ALPHABET)


@pytest.mark.parametrize(
    ("call_id", "code"),
    [(0, "2222"), (1, "2223"), (30, "222Z"), (31, "2232"), (31**4 - 1, "ZZZZ"), (31**4, "32222")],
)
def test_short_code_values(call_id: int, code: str) -> None:
    assert short_code_for(call_id) == code
    assert call_id_from_short_code(code) == call_id


def test_short_code_rejects_negative_and_huge() -> None:
    with pytest.raises(ValueError):
        short_code_for(-1)
    with pytest.raises(ValueError):
        short_code_for(31**12)
    assert len(short_code_for(31**12 - 1)) == 12


@given(st.integers(min_value=0, max_value=31**12 - 1))
def test_short_code_round_trip(call_id: int) -> None:
    code = short_code_for(call_id)
    assert len(code) >= 4 and is_short_code(code)
    assert call_id_from_short_code(code) == call_id
    assert call_id_from_short_code(code.lower()) == call_id
    assert parse_reply(code) == Reply(True, code)
    assert parse_reply(f"收到 {code.lower()}") == Reply(True, code)


@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_short_codes_are_distinct(a: int, b: int) -> None:
    assert (short_code_for(a) == short_code_for(b)) == (a == b)


@pytest.mark.parametrize(
    ("s", "ok"),
    [
        ("K7F3", True),
        ("k7f3", True),
        ("2222", True),
        ("ZZZZZZZZZZZZ", True),
        ("K7F", False),
        ("K7F0", False),
        ("K7FO", False),
        ("K7F1", False),
        ("HELLO", False),
        ("", False),
        ("K7F3 ", False),
        ("ZZZZZZZZZZZZZ", False),
        ("收到K7F3", False),
    ],
)
def test_is_short_code(s: str, ok: bool) -> None:
    assert is_short_code(s) is ok


def test_call_id_from_bad_code() -> None:
    assert call_id_from_short_code("K7F1") is None


# ------------------------------------------------------------------ replies

CONFIRMS = [
    "1",
    " 1 ",
    "１",
    "①",
    "1。",
    "1\n",
    "收到",
    "收到！",
    "收到!",
    "收到。",
    "收到～",
    "  收到  ",
    "收到了",
    "收到了。",
    "已收到",
    "已收到！！",
    "确认",
    "確認" if False else "确认！",
    "好的收到",
    "好的，收到",
    "好的,收到!",
    "【收到】",
    "收到👍",
    "收\u3000到",
    "“收到”",
]


@pytest.mark.parametrize("text", CONFIRMS)
def test_confirm_without_code(text: str) -> None:
    assert parse_reply(text) == Reply(confirm=True, short_code=None)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("收到 K7F3", "K7F3"),
        ("收到k7f3", "K7F3"),
        ("K7F3 收到", "K7F3"),
        ("k7f3收到了", "K7F3"),
        ("1 K7F3", "K7F3"),
        ("K7F3 1", "K7F3"),
        ("K7F31", "K7F3"),  # "1" cannot be part of a code, so this is code + "1"
        ("1K7F3", "K7F3"),
        ("确认：K7F3", "K7F3"),
        ("已收到（K7F3）", "K7F3"),
        ("好的收到 K7F3。", "K7F3"),
        ("ｋ７ｆ３", "K7F3"),  # full-width input
        ("K7F3", "K7F3"),  # bare code confirms that call
        (" k7f3 ", "K7F3"),
        ("收到 ABCDEFGHJKMN", "ABCDEFGHJKMN"),
        ("12222", "2222"),
    ],
)
def test_confirm_with_code(text: str, code: str) -> None:
    assert parse_reply(text) == Reply(confirm=True, short_code=code)


LEADING_CONFIRMS = [
    ("收到，谢谢", None),
    ("收到！马上组织转移", None),  # the 应 comes first; what they do is 反馈
    ("1，好的", None),
    ("确认。已通知各组", None),
    ("收到 K7F3，马上转移", "K7F3"),
]


@pytest.mark.parametrize(("text", "code"), LEADING_CONFIRMS)
def test_reply_that_opens_with_a_confirmation(text: str, code: str | None) -> None:
    assert parse_reply(text) == Reply(confirm=True, short_code=code)


NOT_CONFIRMS = [
    "",
    "   ",
    "！！！",
    "不知道",
    "没收到",
    "未收到",
    "收不到",
    "不确认",
    "收到不了",
    "2",
    "11",
    "0",
    "好的",
    "收",
    "到",
    "收到收到",
    "收到，但是没看懂",  # a negation after the 收到: not a clean 应
    "收到 K7F3，不清楚",
    "请问是什么预警？",
    "K7F",  # too short for a code
    "收到 K7F",
    "收到 K7F0",
    "HELLO",
    "OK",
    "STOP",
    "收到 K7F3 K7F4",  # two codes must not merge into one
    "K7F3 K7F4",
    "K-7-F-3",
    "收到 K7 F3",
    "K7F3收到K7F4",
    "1收到",
    "谁啊",
    "收到" + "啊" * 1000,
    "x" * 100_000,
    "收到" + " " * 10_000 + "不",
    "\x00\x01\x02",
    "１２３４５６７８９０" * 50,
]


@pytest.mark.parametrize("text", NOT_CONFIRMS)
def test_not_a_confirmation(text: str) -> None:
    assert parse_reply(text) == Reply(confirm=False, short_code=None)


def test_normalise() -> None:
    assert normalise(" 收到！ k７f3\n") == "收到K7F3"
    assert normalise("！？。,.;:\t ") == ""


@given(st.text(max_size=200))
def test_parse_reply_never_raises_and_is_consistent(text: str) -> None:
    r = parse_reply(text)
    if not r.confirm:
        assert r.short_code is None
    if r.short_code is not None:
        assert is_short_code(r.short_code) and r.short_code == r.short_code.upper()


@given(st.text(alphabet="不没未否", min_size=1, max_size=5), st.sampled_from(["收到", "1", "确认"]))
def test_negations_do_not_confirm(neg: str, word: str) -> None:
    assert parse_reply(neg + word).confirm is False
