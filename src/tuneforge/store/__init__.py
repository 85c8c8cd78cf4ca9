"""The service's persistence: SQLAlchemy models, tenant-scoped repositories, migrations, artifact storage."""

from tuneforge.store import s3 as _s3  # noqa: F401  (registers s3:// URLs with storage_from_url)
from tuneforge.store.db import make_engine, make_session_factory, upgrade, utcnow
from tuneforge.store.storage import LocalStorage, Storage

__all__ = ["LocalStorage", "Storage", "make_engine", "make_session_factory", "upgrade", "utcnow"]
