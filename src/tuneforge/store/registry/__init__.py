"""The model registry: numbered, immutable versions of a model name and aliases (``production``, ``candidate``
...) pointing at them, every change audited. Two implementations of one :class:`Registry` protocol: the offline
folder (:func:`local_registry`, what ``tuneforge registry`` uses) and the service's, one per tenant in the
database (:func:`db_registry`)."""

from tuneforge.store.registry.base import (
    LATEST,
    PRODUCTION,
    ModelVersion,
    Registry,
    as_registry_ref,
    check_alias,
    check_name,
    default_registry_root,
    parse_model_ref,
    read_run_metrics,
)
from tuneforge.store.registry.local import LocalRegistry, local_registry, os_user
from tuneforge.store.registry.service import DbRegistry, db_registry

__all__ = ["LATEST", "PRODUCTION", "DbRegistry", "LocalRegistry", "ModelVersion", "Registry", "as_registry_ref",
           "check_alias", "check_name", "db_registry", "default_registry_root", "local_registry", "os_user",
           "parse_model_ref", "read_run_metrics"]
