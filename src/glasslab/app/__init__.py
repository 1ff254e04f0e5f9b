"""The workbench server: ``create_app(model)`` builds the FastAPI app that ``glasslab serve`` runs."""

from .server import create_app

__all__ = ["create_app"]
