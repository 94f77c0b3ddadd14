"""Who gets in when the server is at its connection limits (warnd.api.server.ConnectionGuard)."""

from __future__ import annotations

import asyncio
from typing import Any

from warnd.api.server import ConnectionGuard, _Guarded


class Transport(asyncio.Transport):
    """Just enough of a socket transport: a peer address and abort()."""

    def __init__(self, peer: str):
        super().__init__()
        self.peer, self.aborted = peer, False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self.peer, 40000) if name == "peername" else default

    def abort(self) -> None:
        self.aborted = True


class Handler:
    """Stands in for aiohttp's protocol behind the guard."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...


def connect(guard: ConnectionGuard, peer: str) -> tuple[_Guarded, Transport]:
    conn, t = _Guarded(guard, Handler), Transport(peer)  # type: ignore[arg-type]
    conn.connection_made(t)
    return conn, t


async def test_a_client_at_its_own_limit_pushes_out_its_oldest_idle_connection() -> None:
    g = ConnectionGuard(max_connections=10, per_client=3)
    conns = [connect(g, "10.0.0.1") for _ in range(3)]
    conns[0][0].busy = 1  # being answered: never pushed out
    _, t = connect(g, "10.0.0.1")
    assert not t.aborted and conns[1][1].aborted and not conns[0][1].aborted
    assert g.total == 3 and g.evicted == 1
    _, t2 = connect(g, "10.0.0.2")  # another client is not affected
    assert not t2.aborted and g.total == 4


async def test_at_the_overall_limit_the_heaviest_client_pays_and_equals_are_refused() -> None:
    g = ConnectionGuard(max_connections=6, per_client=6)
    attacker = [connect(g, "10.0.0.66") for _ in range(4)]
    [connect(g, "10.0.0.7") for _ in range(2)]
    _, t = connect(g, "10.0.0.2")  # holds none: gets in, the attacker's oldest goes
    assert not t.aborted and attacker[0][1].aborted and g.total == 6
    # .7 holds 2 and the attacker 3: taking one would only swap who is heavier, so refused;
    # the attacker already holds the most, so refused too.
    _, t7 = connect(g, "10.0.0.7")
    _, t66 = connect(g, "10.0.0.66")
    assert t7.aborted and t66.aborted and g.refused == 2 and g.total == 6
    assert not any(t.aborted for _, t in attacker[1:])


async def test_nothing_is_pushed_out_while_every_connection_is_being_answered() -> None:
    g = ConnectionGuard(max_connections=2, per_client=2)
    for c, _ in (connect(g, "10.0.0.1"), connect(g, "10.0.0.1")):
        c.busy = 1
    _, t = connect(g, "10.0.0.2")
    assert t.aborted and g.refused == 1 and g.total == 2


async def test_closing_frees_the_slot() -> None:
    g = ConnectionGuard(max_connections=1, per_client=1)
    c, _ = connect(g, "10.0.0.1")
    c.busy = 1
    c.connection_lost(None)
    _, t = connect(g, "10.0.0.2")
    assert not t.aborted and g.total == 1 and set(g.clients) == {"10.0.0.2"}


async def test_a_connection_whose_first_request_does_not_arrive_in_time_is_closed() -> None:
    g = ConnectionGuard(max_connections=4, per_client=4, header_timeout=0.05)
    _, t_slow = connect(g, "10.0.0.1")
    fast, t_fast = connect(g, "10.0.0.2")
    fast.arrived()  # its request line and headers came in
    await asyncio.sleep(0.1)
    assert t_slow.aborted and not t_fast.aborted
