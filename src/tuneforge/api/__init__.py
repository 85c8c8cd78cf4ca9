"""The HTTP API: ``create_app(settings)`` builds it; ``tuneforge serve`` runs it with uvicorn."""

from tuneforge.api.app import create_app

__all__ = ["create_app"]
