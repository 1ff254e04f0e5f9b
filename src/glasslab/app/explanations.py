"""``GET /api/explanations``: every explanation text, so the workbench shows the same words as notebooks,
reports and the CLI instead of keeping its own copy (the texts live in ``glasslab.views.explanations``)."""

from __future__ import annotations

from fastapi import APIRouter

from ..views.explanations import catalogue

router = APIRouter(prefix="/api", tags=["explanations"])


@router.get("/explanations")
def explanations() -> dict:
    """Results' notes by kind, the workbench's panels, control tooltips and tutorial steps."""
    return catalogue()
