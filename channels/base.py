"""The one small interface every delivery channel implements.

A channel turns an OutboundMessage into a provider receipt, and turns the provider's
webhooks (replies, delivery reports) into InboundReply / DeliveryReport values handed to an
InboundSink. Webhook handlers verify the provider's signature before anything else; a
forged request is answered 403 and reaches nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from aiohttp import web


@dataclass(frozen=True)
class OutboundMessage:
    idempotency_key: str  # unique per delivery; the same key is never sent twice
    to: str  # E.164 phone (+8613800000000) or a channel-specific address
    body: str  # full text, Simplified Chinese, sent intact (UCS-2 on SMS)
    created_at: datetime


@dataclass(frozen=True)
class SendReceipt:
    provider: str
    provider_id: str  # the provider's message id (Twilio SID, Tencent SerialNo)


# Why a send failed, as the operator counts it (warnd_provider_error_reasons): a small fixed
# set, so that the metric's series stay few. in_doubt: no definite answer (timeout, reset, a
# 5xx after the request was written); rate_limited: the provider's rate or quota limits;
# unreachable: no connection was made; refused: a definite, permanent refusal (number,
# content, credentials); undelivered: accepted, then reported not delivered to the handset;
# other: any other failure worth retrying (a 5xx before acceptance, an unexpected answer).
ERROR_REASONS = ("in_doubt", "rate_limited", "unreachable", "refused", "undelivered", "other")


class SendError(Exception):
    default_reason = "other"

    def __init__(self, message: str = "", *, reason: str | None = None):
        super().__init__(message)
        if reason is not None and reason not in ERROR_REASONS:
            raise ValueError(f"unknown send error reason {reason!r}")
        self.reason = reason or self.default_reason


class TransientSendError(SendError):
    """429, 5xx, timeouts, connection errors: retry later with backoff."""

    def __init__(self, message: str, retry_after: float | None = None, *, reason: str | None = None):
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class InDoubtSendError(TransientSendError):
    """No definite answer after the request may have reached the provider (a read timeout, a
    connection reset, a 5xx from its gateway): it may have been accepted. The engine looks
    it up (find_sent) before any resend; a provider without a lookup leaves it to policy."""

    default_reason = "in_doubt"


class PermanentSendError(SendError):
    """Invalid number, rejected content, auth failure: retrying cannot help."""

    default_reason = "refused"


def error_reason(exc: BaseException) -> str:
    """The ERROR_REASONS entry of a failed send (anything that is not a SendError: other;
    in doubt always wins, whatever the channel said)."""
    if isinstance(exc, InDoubtSendError):
        return "in_doubt"
    return exc.reason if isinstance(exc, SendError) else "other"


@dataclass(frozen=True)
class InboundReply:
    provider: str
    dedupe_key: str  # provider identity of this inbound message (duplicates are ignored)
    from_address: str  # E.164
    text: str
    received_at: datetime


@dataclass(frozen=True)
class DeliveryReport:
    provider: str
    dedupe_key: str
    provider_id: str
    delivered: bool  # True: handset received; False: final failure
    final: bool  # False for intermediate states (queued, sent)
    error: str | None = None


@dataclass(frozen=True)
class InboundAction:
    """A confirmation given on a provider's interactive path (a key pressed during a voice
    call, a button tapped on a WeCom card). It names the delivery it answers by the
    provider's id for it (SendReceipt.provider_id); the engine confirms that delivery's call."""

    provider: str
    dedupe_key: str  # provider identity of this event (a re-delivered callback is ignored)
    provider_id: str
    from_address: str  # who acted, as the provider names them (E.164, WeCom userid)
    via: str  # domain.ConfirmVia value: "voice", "wecom"
    received_at: datetime


class InboundSink(Protocol):
    async def on_reply(self, reply: InboundReply) -> None: ...

    async def on_report(self, report: DeliveryReport) -> None: ...

    async def on_reports(self, reports: Sequence[DeliveryReport]) -> None:
        """Several reports of one callback (a provider's status push carries hundreds), applied
        together: one transaction for all, not one each."""
        ...


class ActionSink(InboundSink, Protocol):
    """What interactive channels (voice, WeCom) need besides replies and reports."""

    async def on_action(self, action: InboundAction) -> str:
        """Confirm the call of the delivery `action` answers. Returns the outcome:
        "confirmed", "already confirmed", "duplicate", "unknown delivery", "not the recipient", "no call"."""
        ...

    async def message_text(self, provider: str, provider_id: str) -> str | None:
        """The text of the delivery the provider knows by `provider_id` (a voice call repeats it)."""
        ...


class Channel(Protocol):
    """A delivery channel. Each channel module declares what it is — `kind`, `provider`,
    `max_batch` (how many recipients one request may carry; 1: no batching), `rate_per_second`
    (the provider's request rate, None: unknown), `lookup` (whether `find_sent` can say a
    send was accepted: "exact", or "none" when the provider has no such query),
    `delivery_reports` (whether its webhooks report a send's final outcome), `send_timeout`
    (the longest one send or lookup can be in flight, wall seconds: the engine's leases are
    longer) and `lookup_after` (wall seconds after a send left in doubt before the provider
    can be expected to list it) — and builds itself from its settings (`from_settings`, used
    by channels.registry)."""

    @property
    def kind(self) -> str: ...  # "sms", "voice", "wecom"

    @property
    def provider(self) -> str: ...  # "twilio", "tencent", ...

    @property
    def max_batch(self) -> int: ...

    @property
    def rate_per_second(self) -> float | None: ...

    @property
    def lookup(self) -> str: ...

    @property
    def delivery_reports(self) -> bool: ...

    @property
    def send_timeout(self) -> float: ...

    @property
    def lookup_after(self) -> float: ...

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        """Send once. Raise TransientSendError (definitely not accepted: try again later),
        InDoubtSendError (perhaps accepted: look it up first) or PermanentSendError."""
        ...

    async def send_many(self, msgs: Sequence[OutboundMessage], context: str) -> list[SendReceipt | SendError]:
        """Only when max_batch > 1: one provider request carries the same text to many
        recipients (all msgs share one body); `context` is echoed by the provider for every
        recipient and find_sent matches on it. One result per message, in order."""
        ...

    async def find_sent(self, msg: OutboundMessage, since: datetime) -> SendReceipt | None:
        """Ask the provider whether this message was already accepted (a send whose outcome
        we lost in a crash). `msg.idempotency_key` is the context that was sent to the
        provider; `since` is wall-clock time. None when the provider has no record of it."""
        ...

    def webhook_routes(self, sink: InboundSink) -> list[web.RouteDef]:
        """aiohttp routes for this provider's callbacks, mounted under /webhooks/."""
        ...

    async def close(self) -> None: ...


class ChannelBase:
    """Defaults for what most channels declare the same way."""

    kind = ""
    provider = ""
    max_batch = 1
    rate_per_second: float | None = None
    lookup = "exact"
    delivery_reports = False  # whether the provider's webhooks report a send's final outcome
    send_timeout = 15.0
    lookup_after = 5.0

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        raise NotImplementedError

    async def send_many(self, msgs: Sequence[OutboundMessage], context: str) -> list[SendReceipt | SendError]:
        raise NotImplementedError(f"{type(self).__name__} sends one recipient per request (max_batch = 1)")

    async def find_sent(self, msg: OutboundMessage, since: datetime) -> SendReceipt | None:
        return None

    def webhook_routes(self, sink: InboundSink) -> list[web.RouteDef]:
        return []

    async def close(self) -> None:
        return None
