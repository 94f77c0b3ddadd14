"""`warnd-dev`: the demo storm and simulators (not part of the product's `warnd` command).

    warnd-dev demo [--out DIR] [--[no-]board-screenshot]
                                        a whole 631 storm on a generated county (< 1 min)
    warnd-dev speakers simulate ...     N simulated loudspeakers as real MQTT clients
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from warnd.cli import SWITCH_INTERVAL, settings_from_args
from warnd.config import ConfigError


def cmd_demo(args: argparse.Namespace) -> int:
    from devtools.demo.run import run_demo

    sys.setswitchinterval(SWITCH_INTERVAL)
    return asyncio.run(run_demo(Path(args.out), speed=args.speed, seed=args.seed, busy_speed=args.busy_speed,
                                database=args.database, broker=args.broker, mqtt_username=args.mqtt_username,
                                board_shot=args.board_screenshot))


def build_parser() -> argparse.ArgumentParser:
    from devtools.simulators.speakers import add_cli as add_speakers_cli

    p = argparse.ArgumentParser(prog="warnd-dev", description="warnd's demo and simulators.")
    p.add_argument("--config", help="warnd.toml or its folder (default: $WARND_CONFIG, else /etc/warnd/, "
                   "else built-in defaults)")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="a whole 631 storm on a generated county, in under a minute")
    d.add_argument("--out", default="warnd-demo", help="output folder (default ./warnd-demo/)")
    d.add_argument("--speed", type=float, default=960.0, help="clock speed-up for the quiet hours (default 960)")
    d.add_argument("--busy-speed", type=float, default=60.0,
                   help="clock speed-up for the busy hour, from the rain gauge's first crossing (default 60)")
    d.add_argument("--seed", type=int, default=631)
    d.add_argument("--database", help="run against this (empty) database, e.g. postgresql://warnd@db/warnd "
                   "(default: SQLite in a temporary folder)")
    d.add_argument("--broker", help="HOST:PORT of a running Mosquitto (default: a private one on a free port)")
    d.add_argument("--mqtt-username", default="", help="warnd's MQTT user on --broker (its ACL entry)")
    d.add_argument("--board-screenshot", action=argparse.BooleanOptionalAction, default=None,
                   help="save the imminent warning's 叫应 board mid-storm as OUT/board.png (headless Debian "
                        "chromium + playwright); default: when they are installed, else skipped with one line")
    d.set_defaults(func=cmd_demo)
    add_speakers_cli(sub, settings_from_args)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as e:
        for line in e.lines:
            print(f"configuration error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
