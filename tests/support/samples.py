"""The checkout's config/ folder: example sources and stations, sample rosters. (The shipped
defaults live in the package: warnd.config.package_default.)"""

from __future__ import annotations

from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2] / "config"


def sample(name: str) -> Path:
    return SAMPLES / name
