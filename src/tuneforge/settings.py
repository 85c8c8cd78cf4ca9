"""Settings read from the environment (``TUNEFORGE_*``) or a ``.env`` file.

Built by the CLI (and later ``create_app``) when needed, never at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


def _default_cache() -> Path:
    return Path.home() / ".cache" / "tuneforge"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUNEFORGE_", env_file=".env", extra="ignore")

    cache_dir: Path = Field(default_factory=_default_cache,
                            description="Converted base models and other derived files that can be rebuilt.")
    data_dir: Path = Field(default_factory=lambda: Path.cwd() / ".tuneforge",
                           description="Uploaded files, trained models and the default SQLite database.")


def get_settings() -> Settings:
    return Settings()
