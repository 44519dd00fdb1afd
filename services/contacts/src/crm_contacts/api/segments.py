"""The segments REST API under /v1 (being built)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["segments"])
