"""Fine-tuning jobs as the API and the CLI create and steer them (tenant-scoped through the repositories)."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tuneforge.errors import ConfigError, DataError, InvalidRequestError, NotFoundError, QuotaExceededError
from tuneforge.jobs.options import RESERVED, check_owned, id_problems, placeholders
from tuneforge.jobs.queue import add_event
from tuneforge.jobs.states import FINAL
from tuneforge.settings import Settings
from tuneforge.store.db import utcnow
from tuneforge.store.ids import new_id
from tuneforge.store.models import Job, Tenant
from tuneforge.store.repositories import FileRepo, JobRepo, ModelRepo, UsageRepo
from tuneforge.store.storage import Storage, open_storage
from tuneforge.store.tenants import Principal
from tuneforge.store.usage import month_start

__all__ = ["JobRequest", "available_base_models", "base_model_info", "cancel_job", "create_job", "estimate_job",
           "model_name", "pause_job", "registry_name", "resolve_base_for_training", "resume_job"]

#: epochs an encoder-task job trains when ``n_epochs`` is "auto" (TrainConfig's default; generation: OpenAI's rule)
AUTO_EPOCHS = 3.0

#: TrainConfig fields a job sets itself; the rest may be passed as extra fields of the request
RESERVED_OPTIONS = RESERVED
_SUFFIX = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass
class JobRequest:
    """A validated POST /v1/fine_tuning/jobs body, in TuneForge's terms."""

    model: str
    training_file: str
    validation_file: str | None
    task: str | None  # None: inferred from the training file's format
    hyperparameters: dict[str, Any]
    options: dict[str, Any]
    suffix: str | None
    seed: int | None
    metadata: dict[str, str] | None
    #: OpenAI's method type: "supervised" or "dpo" (its hyperparameters are in ``hyperparameters``)
    method: str = "supervised"


def available_base_models(settings: Settings) -> list[str]:
    """Base models tenants may fine-tune and embed with: installed registry models and the operator's."""
    from tuneforge.models.registry import list_base_models

    return [m.name for m in list_base_models() if m.installed] + sorted(settings.base_models)


def _is_causal_lm(folder: Path) -> bool:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in config.get("architectures") or [])


def chat_base_models(settings: Settings) -> list[str]:
    """The base models that generate: installed registry chat models and the operator's causal LMs."""
    from tuneforge.models.registry import BASE_MODELS

    names = []
    for name in available_base_models(settings):
        if name in settings.base_models:
            if _is_causal_lm(Path(settings.base_models[name])):
                names.append(name)
        elif BASE_MODELS[name].kind == "causal-lm":
            names.append(name)
    return names


def base_model_info(name: str) -> dict[str, str | None]:
    """Language, size and a description of a base model, for choosing one (unknown for an operator's model)."""
    from tuneforge.models.registry import BASE_MODELS

    spec = BASE_MODELS.get(registry_name(name) or "")
    if spec is None:
        return {"language": None, "parameters": None, "description": "A base model provided by the operator."}
    return {"language": spec.language, "parameters": spec.params, "description": spec.description}


def registry_name(name: str) -> str | None:
    """The registry name of a base model given by name or alias, or None."""
    from tuneforge.models.registry import BASE_MODELS

    low = name.lower()
    for spec in BASE_MODELS.values():
        if low == spec.name or low in (a.lower() for a in spec.aliases):
            return spec.name
    return None


def resolve_base_for_training(session: Session, settings: Settings, storage: Storage, tenant_id: str,
                              name: str) -> str:
    """What ``train`` gets as ``base_model``: a registry name, or a folder (an operator's model or one of the
    tenant's fine-tuned models). Tenants never name server paths."""
    if name in settings.base_models:
        return str(settings.base_models[name])
    if name.startswith("ft:"):
        return str(storage.local_path(ModelRepo(session, tenant_id).get(name).storage_key))
    registry = registry_name(name)
    if registry is None:
        raise _not_available(settings, name)
    return registry


def _not_available(settings: Settings, name: str) -> InvalidRequestError:
    shown = "That model" if any(c in name for c in "/\\~") or name.startswith(".") else f"The model '{name}'"
    return InvalidRequestError(
        f"{shown} cannot be fine-tuned here (available: {', '.join(available_base_models(settings))}, or one of "
        "your fine-tuned models, by id; paths are not accepted).", code="model_not_available", param="model")


def _check_base(session: Session, settings: Settings, tenant_id: str, name: str) -> str:
    if name in settings.base_models:
        return name
    if name.startswith("ft:"):
        if ModelRepo(session, tenant_id).find(name) is None:
            raise InvalidRequestError(f"No such model: '{name}'", code="model_not_found", param="model")
        return name
    from tuneforge.models.registry import BASE_MODELS

    registry = registry_name(name)
    if registry is None or not BASE_MODELS[registry].installed():
        raise _not_available(settings, name)
    return registry


def model_name(*, base_model: str, tenant: str, suffix: str | None, job_id: str) -> str:
    """``ft:<base>:<tenant>[:<suffix>]:<8 characters of the job id>``, after OpenAI's naming."""
    base = base_model.split(":")[1] if base_model.startswith("ft:") else base_model
    return ":".join(["ft", base, tenant, *([suffix] if suffix else []), job_id.split("-", 1)[1][:8]])


def _check_method(req: JobRequest) -> None:
    """The job's method trains its task (DPO: generation only), as an OpenAI-style error naming ``method.type``."""
    from tuneforge.jobs.runner import TUNING_METHODS
    from tuneforge.methods import get_method
    from tuneforge.tasks import get_task, task_names

    tuning = TUNING_METHODS.get(req.method)
    if tuning is None or req.task not in task_names() or get_method(tuning).supports(get_task(req.task)):
        return
    fits = [t for t in task_names() if get_method(tuning).supports(get_task(t))]
    raise InvalidRequestError(
        f"method.type: '{req.method}' is not available for {req.task} fine-tuning: it trains {' and '.join(fits)} "
        f"models on preference pairs (a chat file with preferred and non-preferred answers); use 'supervised' for "
        f"{req.task}.", param="method.type", code="unsupported_method")


def _check_options(req: JobRequest) -> None:
    from tuneforge.jobs.runner import train_values
    from tuneforge.tasks import task_names
    from tuneforge.training import make_config

    problems = []
    if req.task not in task_names():
        problems.append(f"metadata.task: '{req.task}' is not a task (choose one of: {', '.join(task_names())})")
    reserved = sorted(RESERVED_OPTIONS & set(req.options))
    if reserved:
        problems.append(f"{', '.join(reserved)}: set by the job itself (use model, training_file, validation_file, "
                        "seed, method and metadata.task)")
    problems += id_problems(req.options)
    if problems:
        raise ConfigError(problems, hint="Fix these fields of the request.")
    _check_method(req)
    assert req.task is not None
    values = train_values(task=req.task, base_model=req.model, data="training_file", eval_data=None,
                          seed=req.seed or 0, hyperparameters=req.hyperparameters,
                          options=placeholders(req.options), method=req.method)
    make_config({**values, "output": "output"}, source="the request")  # every bad option at once, as ConfigError


def create_job(session: Session, *, principal: Principal, settings: Settings, req: JobRequest,
               storage: Storage | None = None) -> Job:
    """Check the request and the tenant's quotas, then queue the job in ``validating_files``. Without a task
    (``metadata.task``) the task is inferred from the training file's format."""
    tenant_id = principal.tenant_id
    storage = storage or open_storage(settings)
    base = _check_base(session, settings, tenant_id, req.model)
    if req.suffix is not None and not _SUFFIX.match(req.suffix):
        raise InvalidRequestError("suffix: up to 64 letters, digits, '.', '-' or '_'", param="suffix",
                                  code="invalid_suffix")
    files = FileRepo(session, tenant_id)
    for param, fid in (("training_file", req.training_file), ("validation_file", req.validation_file)):
        if fid is None:
            continue
        try:
            f = files.get(fid)
        except NotFoundError:
            raise InvalidRequestError(f"{param}: no such file: '{fid}'", param=param, code="file_not_found") from None
        if f.purpose != "fine-tune":
            raise InvalidRequestError(f"{param}: file '{fid}' was uploaded with purpose '{f.purpose}', not "
                                      "'fine-tune'", param=param, code="invalid_file_purpose")
        if param == "training_file" and req.task is None:
            req.task = infer_task(storage_path=storage.local_path(f.storage_key), file_id=f.id,
                                  filename=f.filename, options=req.options, method=req.method)
    check_owned(session, tenant_id, req.options)  # first: nothing about another tenant's object is checked
    _check_options(req)
    # Serialise job creation per tenant so that two concurrent requests cannot both take the last slot.
    session.scalar(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())
    jobs = JobRepo(session, tenant_id)
    limit = principal.quotas.max_concurrent_jobs
    active = jobs.count_active()
    if active >= limit:
        raise QuotaExceededError(
            f"You have {active} active fine-tuning jobs and your plan allows {limit} at once. Wait for one to "
            "finish, or cancel one.", resource="jobs", limit=limit, remaining=0, code="concurrent_jobs_limit")
    _check_token_quota(session, principal)
    job = jobs.add(Job(
        id=new_id("ftjob"), base_model=base, task=req.task, training_file_id=req.training_file,
        validation_file_id=req.validation_file, suffix=req.suffix,
        seed=req.seed if req.seed is not None else secrets.randbelow(2**31), method=req.method,
        hyperparameters=req.hyperparameters, options=req.options, meta=req.metadata, status="validating_files",
        max_attempts=settings.max_attempts, created_at=utcnow(), run_after=utcnow()))
    session.flush()
    add_event(session, job.id, f"Created fine-tuning job: {job.id}")
    session.commit()
    return job


def infer_task(*, storage_path: Path, file_id: str, filename: str, options: dict[str, Any],
               method: str = "supervised") -> str:
    """The task a training file's format shows (a chat, prompt/completion, Alpaca, ShareGPT or preference file:
    generation; text + label: classification; tokens + tags: ner; SQuAD's shape: qa), by the same detection as the
    file preview. The file must then read as that task, and hold the kind of data ``method`` trains on (generation:
    conversations for supervised, preference pairs for dpo): an ``invalid_training_file`` error naming the lines
    says why not, as OpenAI refuses a job on a file that did not validate."""
    from tuneforge.data import read_rows
    from tuneforge.jobs.runner import FileRef, _describe, _load, check_method_fits, scrub_paths
    from tuneforge.tasks import guess_task, task_names
    from tuneforge.tasks.datasets import file_columns

    ref = FileRef(str(storage_path), file_id, filename, "training_file")

    def refuse(e: DataError, task: str | None, first_line: int | None = None) -> InvalidRequestError:
        shown = "; ".join(_where(p, first_line) for p in e.problems[:5])
        more = f" (and {len(e.problems) - 5} more problems)" if len(e.problems) > 5 else ""
        read = f" for {task}, the task its columns suggest" if task else ""
        return InvalidRequestError(
            scrub_paths(f"training_file: {filename} ({file_id}) is not a valid training file{read}: {shown}{more}. "
                        f"Fix the file, or set metadata.task to one of: {', '.join(task_names())}.", [ref]),
            param="training_file", code="invalid_training_file")

    renamed = {v: k for k, v in (options.get("columns") or {}).items() if isinstance(v, str)}
    columns = list(dict.fromkeys(renamed.get(c, c) for c in file_columns(storage_path)))
    if not columns:  # nothing read as records: the reader of any task says why
        try:
            read_rows(storage_path)
        except DataError as e:
            raise refuse(e, None) from None
    task = guess_task(columns)
    try:
        train_ds, _ = _load(task, ref, None, options)
    except DataError as e:
        raise refuse(e, task, _first_line(storage_path)) from None
    try:
        check_method_fits(task, method, [(train_ds, ref)])
    except DataError as e:
        raise InvalidRequestError(scrub_paths(f"training_file: {_describe(e.problems[0], {ref.path: ref})}", [ref]),
                                  param="training_file", code="invalid_training_file") from None
    return task


def _where(p: Any, first_line: int | None) -> str:
    """``line 3, field 'messages': <what is wrong> (<what to do>)``; a missing column, which has no line of its
    own, at the first record's line."""
    line = p.line if p.line is not None or not p.field else first_line
    at = ", ".join(x for x in (f"line {line}" if line is not None else "", f"field '{p.field}'" if p.field else "")
                   if x)
    hint = f" ({p.hint})" if p.hint else ""
    return f"{at}: {p.message}{hint}" if at else f"{p.message}{hint}"


def _first_line(path: Path) -> int | None:
    """The line of a file's first record (None when none reads)."""
    from tuneforge.data import read_rows

    try:
        rows = read_rows(path)[1]
    except DataError:
        return None
    return rows[0].line if rows else None


def _check_token_quota(session: Session, principal: Principal) -> None:
    limit = principal.quotas.trained_tokens_per_month
    used = UsageRepo(session, principal.tenant_id).total("trained_tokens", since=month_start())
    if used >= limit:
        now = utcnow()
        nxt = month_start(month_start(now) + timedelta(days=32))
        raise QuotaExceededError(
            f"This month's quota of {limit:,} trained tokens is used up ({used:,} trained). It renews on "
            f"{nxt:%Y-%m-%d}; a larger plan has more.", resource="tokens", limit=limit, remaining=0,
            reset_seconds=(nxt - now).total_seconds(), code="trained_tokens_limit")


def _invalid_state(job: Job, action: str) -> InvalidRequestError:
    status = "cancelled" if job.control == "cancel" else job.status  # as its owner sees it
    return InvalidRequestError(f"Cannot {action} fine-tuning job {job.id}: it is {status}.",
                               code="invalid_job_state", param="fine_tuning_job_id")


def cancel_job(session: Session, *, tenant_id: str, job_id: str) -> Job:
    """Cancel a job. It reads as cancelled at once; a running training stops at its next step."""
    job = JobRepo(session, tenant_id).get(job_id, for_update=True)
    if job.status in FINAL or job.control == "cancel":
        raise _invalid_state(job, "cancel")
    if job.status == "running":
        job.control = "cancel"
        add_event(session, job.id, "Cancellation requested.")
    else:
        job.status, job.finished_at, job.control = "cancelled", utcnow(), None
        job.lease_owner = job.lease_expires_at = None
        add_event(session, job.id, "Fine-tuning job cancelled.")
    session.commit()
    return job


def pause_job(session: Session, *, tenant_id: str, job_id: str) -> Job:
    """Pause a job: a running training stops at its next step with a checkpoint to resume from."""
    job = JobRepo(session, tenant_id).get(job_id, for_update=True)
    if job.status == "paused" or job.control == "pause":
        return job
    if job.status in FINAL or job.control == "cancel":
        raise _invalid_state(job, "pause")
    if job.status == "running":
        job.control = "pause"
        add_event(session, job.id, "Pause requested.")
    else:
        job.status, job.control = "paused", None
        job.lease_owner = job.lease_expires_at = None
        add_event(session, job.id, "Fine-tuning job paused.")
    session.commit()
    return job


def resume_job(session: Session, *, principal: Principal, job_id: str) -> Job:
    """Resume a paused job: it is queued again and continues from its last checkpoint."""
    jobs = JobRepo(session, principal.tenant_id)
    job = jobs.get(job_id, for_update=True)
    if job.control == "pause" and job.status == "running":
        job.control = None
        add_event(session, job.id, "Pause request withdrawn.")
        session.commit()
        return job
    if job.status != "paused":
        raise _invalid_state(job, "resume")
    limit = principal.quotas.max_concurrent_jobs
    active = jobs.count_active()
    if active >= limit:
        raise QuotaExceededError(f"You have {active} active fine-tuning jobs and your plan allows {limit} at once.",
                                 resource="jobs", limit=limit, code="concurrent_jobs_limit")
    job.status = "queued" if job.validated_at else "validating_files"
    job.run_after = utcnow()
    add_event(session, job.id, "Fine-tuning job resumed; it continues from its last checkpoint.")
    session.commit()
    return job


def estimate_job(session: Session, *, principal: Principal, settings: Settings, storage: Storage,
                 req: JobRequest) -> dict[str, Any]:
    """What a job would train, before it is created: examples, tokens per epoch, epochs, tokens to train, and
    how that compares with what is left of this month's token quota. The file is validated as a job's would be
    (a bad file raises the same DataError, naming the customer's file)."""
    from transformers import AutoTokenizer

    from tuneforge.jobs.runner import FileRef, _load, check_method_fits, job_epochs, tokenizer_dir, train_values
    from tuneforge.tasks import get_task

    tenant_id = principal.tenant_id
    _check_base(session, settings, tenant_id, req.model)
    try:
        f = FileRepo(session, tenant_id).get(req.training_file)
    except NotFoundError:
        raise InvalidRequestError(f"training_file: no such file: '{req.training_file}'", param="training_file",
                                  code="file_not_found") from None
    if req.task is None:
        req.task = infer_task(storage_path=storage.local_path(f.storage_key), file_id=f.id, filename=f.filename,
                              options=req.options, method=req.method)
    check_owned(session, tenant_id, req.options)  # first: nothing about another tenant's object is checked
    _check_options(req)
    base = resolve_base_for_training(session, settings, storage, tenant_id, req.model)
    used = UsageRepo(session, tenant_id).total("trained_tokens", since=month_start())
    path, filename = str(storage.local_path(f.storage_key)), f.filename
    session.rollback()  # tokenizing may take a while: hold no transaction
    ref = FileRef(path, f.id, filename, "training_file")
    try:
        train_ds, _ = _load(req.task, ref, None, req.options)
        check_method_fits(req.task, req.method, [(train_ds, ref)])
    except DataError as e:
        from dataclasses import replace

        raise DataError([replace(p, file=filename) if p.file == path else p for p in e.problems],
                        hint="Fix these lines in your file, or check the task.") from None
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir(base, settings.cache_dir)))
    per_epoch = get_task(req.task).count_tokens(train_ds.examples, tokenizer, req.options.get("max_length"))
    values = train_values(task=req.task, base_model=base, data=path, eval_data=None, seed=0,
                          hyperparameters=req.hyperparameters, options=req.options, method=req.method)
    epochs = job_epochs(values, len(train_ds))
    total = int(per_epoch * epochs)
    limit = principal.quotas.trained_tokens_per_month
    return {"object": "fine_tuning.estimate", "model": req.model, "task": req.task, "training_file": f.id,
            "examples": len(train_ds), "tokens_per_epoch": per_epoch, "epochs": epochs, "trained_tokens": total,
            "quota": {"limit": limit, "used": used, "remaining": max(0, limit - used)},
            "within_quota": used + total <= limit}
