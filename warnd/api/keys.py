"""Typed request keys shared by the auth middleware and the pages that read what it found."""

from __future__ import annotations

from aiohttp import web

from warnd.auth.service import Principal

PRINCIPAL = web.RequestKey("principal", Principal)  # set by warnd.api.auth on declared routes
