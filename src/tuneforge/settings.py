"""Settings read from the environment (``TUNEFORGE_*``) or a ``.env`` file.

Built by the CLI and by ``create_app`` when needed, never at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]

MiB = 1024 * 1024


def _default_cache() -> Path:
    return Path.home() / ".cache" / "tuneforge"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUNEFORGE_", env_file=".env", extra="ignore")

    cache_dir: Path = Field(default_factory=_default_cache,
                            description="Converted base models and other derived files that can be rebuilt.")
    data_dir: Path = Field(default_factory=lambda: Path.cwd() / ".tuneforge",
                           description="Uploaded files, trained models and the default SQLite database.")

    # --- the service ------------------------------------------------------------------------------------------
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the database (default: a SQLite file in data_dir; "
                          "postgresql+psycopg://user@host/db for production).")
    storage_url: str | None = Field(
        None, description="Where uploaded files and trained models are kept: file:///path (default: "
                          "data_dir/artifacts) or s3://bucket/prefix (AWS S3, MinIO, Ceph; endpoint and credentials "
                          "from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION).")
    base_models: dict[str, Path] = Field(
        default_factory=dict, description="Extra base models tenants may fine-tune, by name: local Hugging Face "
                                          "folders chosen by the operator (tenants never pass server paths).")
    default_plan: str = Field("trial", description="Plan of a tenant created without --plan.")
    max_upload_bytes: int = Field(100 * MiB, ge=1, description="Largest file accepted by POST /v1/files.")
    max_predict_inputs: int = Field(256, ge=1, description="Most inputs in one /v1/predict or /v1/embeddings call.")
    max_input_chars: int = Field(100_000, ge=1, description="Most characters in one input of /v1/predict or "
                                                            "/v1/embeddings (a QA input: question and context).")
    max_request_bytes: int = Field(4 * MiB, ge=1024, description="Largest request body, except uploads to "
                                                                 "POST /v1/files (max_upload_bytes).")
    api_docs: bool = Field(True, description="Serve the OpenAPI docs at /docs.")
    console: bool = Field(True, description="Serve the web console at /console.")

    # --- the job queue and its workers ------------------------------------------------------------------------
    embedded_workers: int = Field(1, ge=0, description="Jobs `tuneforge serve` trains at once in its own worker "
                                                       "(0: none, run `tuneforge worker` instead).")
    worker_concurrency: int = Field(1, ge=1, description="Jobs one `tuneforge worker` trains at once.")
    executor: str = Field(
        "process", description="Where a worker runs a training, by executor name (tuneforge.jobs.executors): "
                               "process, a child process per job (a crash or kill takes only that job's attempt), "
                               "or thread (tests, debugging).")
    lease_seconds: float = Field(30.0, gt=0, description="A claimed job is presumed abandoned when its worker has "
                                                        "not renewed the lease for this long.")
    heartbeat_seconds: float = Field(2.0, gt=0, description="How often a worker renews its leases and picks up "
                                                           "cancel/pause requests.")
    poll_seconds: float = Field(1.0, gt=0, description="How often an idle worker looks for new jobs.")
    max_attempts: int = Field(3, ge=1, description="Attempts of a job whose worker died before it is failed.")
    retry_backoff_seconds: float = Field(2.0, ge=0, description="Wait before a requeued job may be claimed again.")
    train_threads: int | None = Field(None, ge=1, description="Torch threads per training (default: cores / jobs).")

    # --- inference --------------------------------------------------------------------------------------------
    model_cache_bytes: int = Field(2048 * MiB, ge=1, description="Memory for loaded models (least recently used "
                                                                 "are unloaded first).")
    batch_max_items: int = Field(64, ge=1, description="Most inputs run in one forward pass by the micro-batcher.")
    # inference backends (tuneforge.inference.backends; docs/backends.md)
    backend: str = Field("torch", description="What runs encoder models: torch, torch-bf16, onnx, onnx-int8, or "
                                              "auto (the fastest that agrees with torch, measured at load).")
    model_backends: dict[str, str] = Field(default_factory=dict, description="Per-model backends, by run name "
                                           "(its tuneforge.json name) or served folder name: {\"NAME\": \"onnx\"}.")
    batch_wait_ms: float = Field(2.0, ge=0, description="How long the micro-batcher waits for more requests "
                                                        "before a forward pass.")
    chat_max_batch: int = Field(32, ge=1, description="Sequences one chat model decodes together (continuous "
                                                      "batching).")
    chat_max_queue: int = Field(256, ge=1, description="Chat requests waiting to join a model's batch; one more is "
                                                       "answered 503 server_overloaded.")
    chat_timeout_seconds: float = Field(600.0, gt=0, description="Longest a chat or completion request may wait "
                                                                 "and generate (503 timeout past it).")
    chat_max_tokens: int = Field(2048, ge=1, description="Most tokens one chat or completion reply may ask for "
                                                         "(max_tokens / max_completion_tokens); also the default.")
    usage_flush_seconds: float = Field(2.0, gt=0, description="How often metered requests are written to the "
                                                             "usage ledger.")
    allow_private_urls: bool = Field(False, description="Let URLs that tenants give the server to fetch or call "
                                     "(feeds, pages, webhooks) reach loopback, private and link-local addresses. "
                                     "Off, such URLs are refused, so a tenant cannot probe the server's network.")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError(f"heartbeat_seconds ({self.heartbeat_seconds}) must be shorter than lease_seconds "
                             f"({self.lease_seconds}), or every lease would expire between two heartbeats")
        return self

    @property
    def db_url(self) -> str:
        """The database URL in use: ``database_url``, or the SQLite file in ``data_dir``."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'tuneforge.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def work_dir(self) -> Path:
        return self.data_dir / "work"


def get_settings() -> Settings:
    return Settings()
