"""Automated feeds: CAP push and polling, telemetry thresholds, warning expiry."""
