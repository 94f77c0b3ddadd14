"""Confirm links (叫应 by tapping a link) and 反馈 (what the official did)."""
