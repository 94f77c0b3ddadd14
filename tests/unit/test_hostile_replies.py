"""Hostile SMS replies: the reply grammar must never raise, stay fast on long input, and never
read a confirmation into text that carries a negation or a second code."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from warnd.core.replies import (
    ALPHABET,
    CONFIRM_WORDS,
    NEGATIONS,
    Reply,
    call_id_from_short_code,
    is_short_code,
    parse_reply,
    short_code_for,
)

# Characters that change under NFKC / case folding, combining marks, bidi controls, full-width
# forms, emoji with modifiers, lone surrogates (JSON "\ud800" decodes to one) and code letters.
TRICKY = ("收到确认已了好的1不没未无否ＡＢｋ７１①⑴㊀ﷺ㍿ßİı\u0301\u200b\u200d\u202e\ufeff\u3000，。！？"
          "👍🏽\U0001f1e8\U0001f1f3\ud800\udfff" + ALPHABET + ALPHABET.lower() + "01OIL -_")
hostile_text = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=TRICKY, max_size=40),
    st.lists(st.sampled_from([*CONFIRM_WORDS, *NEGATIONS, "K7F3", "k7f3", " ", "，", "\u200b", "👍"]),
             max_size=8).map("".join),
)


@settings(max_examples=500, deadline=None)
@given(hostile_text)
def test_parse_reply_never_raises(text: str) -> None:
    r = parse_reply(text)
    assert isinstance(r, Reply)
    assert r.short_code is None or (r.confirm and is_short_code(r.short_code))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CONFIRM_WORDS), st.sampled_from(NEGATIONS), st.text(alphabet=TRICKY, max_size=6))
def test_a_negation_after_the_keyword_never_confirms(word: str, neg: str, noise: str) -> None:
    assert parse_reply(f"{word}，{neg}{noise}").confirm is False
    assert parse_reply(f"{neg}{word}").confirm is False


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_short_code_helpers_never_raise(text: str) -> None:
    n = call_id_from_short_code(text)
    if n is not None:
        assert short_code_for(n).lstrip(ALPHABET[0]) == text.upper().lstrip(ALPHABET[0])


def test_long_and_expanding_input_is_read_right() -> None:
    # NFKC expands U+FDFA to 18 characters: 100,000 of them must not confirm. Emoji are dropped
    # by design ("收到👍" is a 应), however many there are. (Speed: bench/, not a timed test.)
    for text, confirm in (("收到" + "\ufdfa" * 100_000, False), ("1" * 1_000_000, False),
                          ("收到 " + "👍🏽" * 200_000, True)):
        assert parse_reply(text).confirm is confirm
