"""`python -m devtools.faults.provider`: the Tencent Cloud SMS simulator as a standalone,
fault-injecting provider (deploy/province/compose.yaml, docs/province.md).

It speaks the real SDK's wire API (TC3 signatures checked), appends every accepted number and
text to `--accepted-log` before it answers (the fault harness's evidence: a text in it reached
the provider, whatever warnd then recorded), pushes 状态报告 to `--status-callback`, and arms
the same provider faults as the fault scenarios (devtools/faults/providers.py): a share of
HTTP 500s before acceptance, answers after the SDK's timeout or 500s after acceptance, and a
503 outage window. Credentials are the simulator's defaults unless given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import sys
from pathlib import Path

from devtools.faults.providers import late_and_broken, outage, provider_500s
from devtools.simulators.tencent_sms_api import TencentSmsApi


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m devtools.faults.provider", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", default="127.0.0.1:9000", help="host:port to serve the SMS API on")
    p.add_argument("--accepted-log", type=Path, help="append every accepted number and text here (JSON lines)")
    p.add_argument("--status-callback", default="",
                   help="warnd's 状态报告 URL (…/webhooks/tencent/sms/{token}/status); empty: none pushed")
    p.add_argument("--share-500", type=float, default=0.0, help="share of requests answered 500 before acceptance")
    p.add_argument("--late", type=float, default=0.0, help="share accepted, then answered after --late-seconds")
    p.add_argument("--late-seconds", type=float, default=6.0, help="longer than warnd's [sms.tencent] timeout")
    p.add_argument("--broken", type=float, default=0.0, help="share answered 500 (half of them accepted first)")
    p.add_argument("--outage-after", type=float, default=0.0, help="seconds from start to a 503 outage")
    p.add_argument("--outage-seconds", type=float, default=0.0, help="how long the outage lasts (0: none)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--secret-id", default="AKIDsimulated")
    p.add_argument("--secret-key", default="simulated-secret-key")
    p.add_argument("--sdk-app-id", default="1400000000")
    p.add_argument("--sign-name", default="某县应急管理局")
    return p


def build(args: argparse.Namespace) -> TencentSmsApi:
    """The simulator with the faults of `args` armed (not started)."""
    sim = TencentSmsApi(secret_id=args.secret_id, secret_key=args.secret_key, sdk_app_id=args.sdk_app_id,
                        sign_name=args.sign_name, status_callback_url=args.status_callback or None,
                        log_path=args.accepted_log, seed=args.seed)
    rng = random.Random(args.seed)
    if args.share_500:
        provider_500s(args.share_500)(sim, rng)
    if args.late or args.broken:
        late_and_broken(args.late, args.broken)(sim, rng)
        sim.late_seconds = args.late_seconds
    if args.outage_seconds:
        outage(args.outage_after, args.outage_seconds)(sim, rng)
    return sim


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    host, _, port = args.listen.rpartition(":")
    sim = build(args)
    await sim.start(host or "127.0.0.1", int(port))
    print(f"tencent sms simulator on {sim.base_url} (accepted log: {args.accepted_log or 'none'})", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()


async def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await serve(args, stop)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
