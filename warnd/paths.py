"""Where the shipped configuration lives.

The repository's config/ folder is the source of truth (operators copy and edit it). It is
found next to the package in a checkout; WARND_CONFIG_DIR overrides it.
"""

from __future__ import annotations

import os
from pathlib import Path


def config_dir() -> Path:
    env = os.environ.get("WARND_CONFIG_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "config"


def default_config(name: str) -> Path:
    return config_dir() / name
