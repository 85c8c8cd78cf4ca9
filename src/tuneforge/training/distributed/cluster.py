"""Reaching Ray: the cluster ``RAY_ADDRESS`` names, else a Ray started in this process; and where Ray keeps a run's
checkpoints (a folder, or ``s3://`` through pyarrow's S3 filesystem with the standard AWS variables)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError

__all__ = ["RAY_HINT", "absolute_paths", "connect", "import_ray", "private_token", "storage_location", "worker_env"]

RAY_HINT = "Install the Ray extra: pip install 'tuneforge[ray]' (ray[train,tune])."

#: environment variables a Ray worker needs as this process has them (offline models, TuneForge settings)
_PASSED = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "HF_HOME", "AWS_ENDPOINT_URL",
           "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "OMP_WAIT_POLICY")


_PATH_FIELDS = ("data", "eval_data", "unlabeled_data", "distill_from")


def absolute_paths(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with its file options (and a base model given as a folder) made absolute: a Ray worker runs
    in a folder of its own."""
    out = dict(values)
    for name in _PATH_FIELDS:
        if out.get(name) is not None:
            out[name] = str(Path(out[name]).resolve())
    base = out.get("base_model")
    if isinstance(base, str | Path) and Path(base).exists():
        out["base_model"] = str(Path(base).resolve())
    return out


def import_ray() -> Any:
    """The ``ray`` module with Train and Tune, or a :class:`ConfigError` that says how to install them."""
    try:
        import ray
        import ray.train
        import ray.tune  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"executor: ray is not installed ({e})", hint=RAY_HINT) from None
    return ray


def worker_env() -> dict[str, str]:
    """The variables passed to every Ray worker of this driver (its runtime environment)."""
    env = {k: v for k, v in os.environ.items() if k.startswith("TUNEFORGE_") or k in _PASSED}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    return env


def connect(num_cpus: int | None = None) -> Any:
    """Connect this process to Ray once: the cluster at ``RAY_ADDRESS`` when set, else a local Ray with
    ``num_cpus`` CPUs (default: this machine's). Returns the ``ray`` module."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    address = os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": worker_env()}, "log_to_driver": True,
                              "configure_logging": False}
    if address is None:  # "local": a Ray of this process's own, even where `ray start` left one running
        address = "local"
        kwargs.update(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False)
        private_token()
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as e:
        raise ConfigError(f"executor: no Ray cluster answers at RAY_ADDRESS={address} ({e})",
                          hint="Start one with `ray start --head` and set RAY_ADDRESS to its address, or unset "
                               "RAY_ADDRESS to start Ray on this machine.") from None
    return ray


def private_token() -> None:
    """Token authentication for a Ray this process starts, with a token of its own in the environment (inherited by
    Ray's processes): Ray would otherwise write one to ``~/.ray/auth_token``, which then turns token
    authentication on for every later ``ray start`` on the machine while ``ray status`` does not send it. A mode
    or token set by the user wins."""
    if "RAY_AUTH_MODE" not in os.environ and "RAY_AUTH_TOKEN" not in os.environ:
        import secrets

        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def storage_location(where: str | None, default: Path) -> tuple[str, Any]:
    """Ray Train's ``storage_path`` and ``storage_filesystem`` for ``where``: a local folder (``default`` when
    None) or ``s3://bucket/prefix`` (pyarrow's S3 filesystem, endpoint from ``AWS_ENDPOINT_URL``)."""
    if where is None:
        return str(default.resolve()), None
    if where.startswith("file://"):
        return str(Path(where.removeprefix("file://")).resolve()), None
    if where.startswith("s3://"):
        from pyarrow import fs

        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        kwargs: dict[str, Any] = {"region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
        if endpoint:
            kwargs.update(endpoint_override=endpoint, scheme="https" if endpoint.startswith("https") else "http")
        return where.removeprefix("s3://").rstrip("/"), fs.S3FileSystem(**kwargs)
    if "://" in where:
        raise ConfigError(f"ray_storage: {where!r} is neither a folder, file:// nor s3://bucket/prefix")
    return str(Path(where).resolve()), None
