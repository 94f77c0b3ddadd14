"""The channel contract: every channel in channels/registry.py, against its provider's local
stand-in through the provider's real SDK or wire format, passes the same tests — it declares
what it is, sends Chinese text intact, finds a send it lost (or says it cannot), tells
transient from permanent errors, turns the provider's delivery reports and the recipient's
answer into values for the engine, and refuses forged callbacks before anything else.

A new channel passes this by adding a harness in tests/support/contract/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from channels.base import ChannelBase, PermanentSendError, TransientSendError
from channels.registry import REGISTRY, channel_class
from support.contract import Harness, harness_classes, message, running

CLASSES = harness_classes()
WITH_REPORTS = [n for n, h in CLASSES.items() if channel_class(*h.registry).delivery_reports]


@pytest.fixture(params=sorted(CLASSES))
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async with running(CLASSES[request.param]) as harness:
        yield harness


def test_every_registered_channel_is_under_the_contract() -> None:
    registered = {(kind, provider) for kind, providers in REGISTRY.items() for provider in providers}
    assert registered == {h.registry for h in CLASSES.values()}


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_channel_declares_what_it_is(name: str) -> None:
    cls = channel_class(*CLASSES[name].registry)
    assert issubclass(cls, ChannelBase)
    assert cls.kind == CLASSES[name].registry[0] and cls.provider
    assert cls.max_batch >= 1 and cls.lookup in ("exact", "none")
    assert cls.rate_per_second is None or cls.rate_per_second > 0
    assert cls.send_timeout > 0 and cls.lookup_after >= 0  # the outbox's leases and lookups use them
    assert callable(getattr(cls, "from_settings", None))
    if cls.max_batch > 1:  # batching is declared, never found by duck typing
        assert cls.send_many is not ChannelBase.send_many


async def test_send_reaches_the_provider_with_the_text_intact(h: Harness) -> None:
    receipt = await h.channel.send(message(h.address(1), "contract-1"))
    assert receipt.provider == h.channel.provider and receipt.provider_id
    [(to, shown)] = h.accepted()
    assert to == h.address(1)
    assert "暴雨红色预警" in shown and "鸣锣吹哨、敲门入户" in shown


async def test_a_lost_send_is_found_or_the_channel_says_it_cannot(h: Harness) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    await h.channel.send(message(h.address(2), "contract-other", body="其他通知"))
    receipt = await h.channel.send(message(h.address(1), "contract-2"))
    found = await h.channel.find_sent(message(h.address(1), "contract-2"), since)
    never = await h.channel.find_sent(message(h.address(3), "contract-never"), since)
    assert never is None
    if h.channel.lookup == "exact":
        assert found == receipt
    else:  # no lookup: the engine's policy decides, the channel never guesses
        assert found is None


async def test_batches_carry_one_text_to_many_in_order(h: Harness) -> None:
    if h.channel.max_batch == 1:
        pytest.skip("sends one recipient per request")
    msgs = [message(h.address(i), f"contract-b{i}") for i in (1, 2, 3)]
    h.refuse(h.address(2))
    results = await h.channel.send_many(msgs, context="contract-batch")
    assert [type(r).__name__ for r in results] == ["SendReceipt", "PermanentSendError", "SendReceipt"]
    assert sorted(to for to, _ in h.accepted()) == [h.address(1), h.address(3)]


async def test_a_fault_worth_retrying_is_transient_and_the_retry_goes_out(h: Harness) -> None:
    h.fail_next_transiently()
    with pytest.raises(TransientSendError):
        await h.channel.send(message(h.address(1), "contract-3"))
    assert h.accepted() == []
    await h.channel.send(message(h.address(1), "contract-3"))
    assert [to for to, _ in h.accepted()] == [h.address(1)]


async def test_a_refused_recipient_is_permanent_and_nothing_is_sent(h: Harness) -> None:
    h.refuse(h.address(4))
    with pytest.raises(PermanentSendError):
        await h.channel.send(message(h.address(4), "contract-4"))
    assert h.accepted() == []


@pytest.mark.parametrize("delivered", [True, False])
@pytest.mark.parametrize("name", WITH_REPORTS)
async def test_delivery_reports_reach_the_engine(name: str, delivered: bool) -> None:
    async with running(CLASSES[name]) as h:
        receipt = await h.channel.send(message(h.address(1), "contract-5"))
        await h.report(receipt, delivered)
        await h.sink.wait(lambda: any(r.final for r in h.sink.reports))
        [final] = [r for r in h.sink.reports if r.final]
        assert final.provider_id == receipt.provider_id and final.delivered is delivered
        assert (final.error is None) is delivered
        assert len({r.dedupe_key for r in h.sink.reports}) == len(h.sink.reports)


async def test_the_recipients_answer_reaches_the_engine(h: Harness) -> None:
    receipt = await h.channel.send(message(h.address(1), "contract-6"))
    await h.answer(receipt, h.address(1))
    if h.answers == "reply":
        [reply] = h.sink.replies
        assert reply.from_address == h.address(1) and reply.text == "1 收到" and reply.dedupe_key
    else:
        await h.sink.wait(lambda: bool(h.sink.actions))
        [action] = h.sink.actions
        assert action.provider_id == receipt.provider_id and action.from_address == h.address(1)
        assert action.via == h.channel.kind


async def test_forged_callbacks_are_refused_before_anything_else(h: Harness) -> None:
    statuses = await h.forge()
    assert statuses and set(statuses) == {403}
    assert h.sink.empty()

