"""Request and response bodies, after the OpenAI API (``XCreate`` in, ``XPublic`` out)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tuneforge.store.models import ApiKey, Checkpoint, File, Job, JobEvent, Model
from tuneforge.tasks import task_names

__all__ = ["ApiKeyCreate", "ApiKeyCreated", "ApiKeyPublic", "CheckpointPublic", "CleanCreate", "CleanPublic",
           "DpoHyperparameters", "DpoIn", "EmbeddingCreate", "EmbeddingsPublic", "ErrorDetail", "ErrorPublic",
           "EstimatePublic", "EvaluationPublic", "EventPublic", "FileDeleted", "FilePreviewPublic", "FilePublic",
           "Hyperparameters", "JobCreate", "JobPublic", "ListPublic", "MethodIn", "ModelDeleted", "ModelPublic",
           "PredictCreate", "PredictPublic", "ProblemPublic", "SplitCreate", "SplitPublic", "TaskName",
           "UsagePublic", "WhoAmIPublic"]


def _registered_task(name: str) -> str:
    if name not in task_names():
        raise ValueError(f"unknown task '{name}' (choose one of: {', '.join(task_names())})")
    return name


#: a task name, validated against the task registry (a newly registered task is accepted without editing this)
TaskName = Annotated[str, AfterValidator(_registered_task),
                     Field(description="A registered task: " + ", ".join(task_names()) + ".")]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorPublic(BaseModel):
    """Every error, after OpenAI's envelope."""

    error: ErrorDetail


def _ts(t: datetime | None) -> int | None:
    return None if t is None else int(t.timestamp())


class ListPublic(BaseModel):
    object: Literal["list"] = "list"
    data: list[Any]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None

    @classmethod
    def of(cls, items: list[Any], has_more: bool = False) -> ListPublic:
        ids = [getattr(x, "id", None) for x in items]
        return cls(data=items, has_more=has_more, first_id=ids[0] if ids else None,
                   last_id=ids[-1] if ids else None)


# ------------------------------------------------------------------------------------------------------ files
class FilePublic(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str
    status_details: str | None = None
    expires_at: int | None = None

    @classmethod
    def of(cls, f: File) -> FilePublic:
        return cls(id=f.id, bytes=f.bytes, created_at=_ts(f.created_at) or 0, filename=f.filename,
                   purpose=f.purpose, status=f.status)


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


# ------------------------------------------------------------------------------------------------------- jobs
class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_epochs: Literal["auto"] | int = Field("auto", description="Passes over the training data (1-1000).")
    batch_size: Literal["auto"] | int = Field("auto", description="Examples per step.")
    learning_rate_multiplier: Literal["auto"] | float = Field(
        "auto", description="Scales TuneForge's learning rate for the base model's size.")

    def checked(self) -> Hyperparameters:
        from tuneforge.errors import ConfigError

        problems = []
        if isinstance(self.n_epochs, int) and not 1 <= self.n_epochs <= 1000:
            problems.append(f"n_epochs: must be 1-1000 or 'auto', got {self.n_epochs}")
        if isinstance(self.batch_size, int) and not 1 <= self.batch_size <= 4096:
            problems.append(f"batch_size: must be 1-4096 or 'auto', got {self.batch_size}")
        if isinstance(self.learning_rate_multiplier, float) and not 0 < self.learning_rate_multiplier <= 100:
            problems.append(f"learning_rate_multiplier: must be in (0, 100] or 'auto', got "
                            f"{self.learning_rate_multiplier}")
        if problems:
            raise ConfigError(problems, hint="Fix method.supervised.hyperparameters.")
        return self


class DpoHyperparameters(Hyperparameters):
    beta: Literal["auto"] | float = Field(
        "auto", description="DPO's beta: how strongly the model is held to its starting point (auto: 0.1).")

    def checked(self) -> DpoHyperparameters:
        from tuneforge.errors import ConfigError

        problems = []
        try:
            super().checked()
        except ConfigError as e:
            problems += e.problems
        if isinstance(self.beta, float) and not 0 < self.beta <= 10:
            problems.append(f"beta: must be in (0, 10] or 'auto', got {self.beta}")
        if problems:
            raise ConfigError(problems, hint="Fix method.dpo.hyperparameters.")
        return self


class SupervisedIn(BaseModel):
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)


class DpoIn(BaseModel):
    hyperparameters: DpoHyperparameters = Field(default_factory=DpoHyperparameters)


class MethodIn(BaseModel):
    """OpenAI's ``method``: ``supervised`` (any task) or ``dpo`` (generation, on preference pairs), each with its
    hyperparameters. ``reinforcement`` is OpenAI's too, and refused with a message."""

    type: Literal["supervised", "dpo", "reinforcement"] = "supervised"
    supervised: SupervisedIn | None = None
    dpo: DpoIn | None = None
    reinforcement: dict[str, Any] | None = None


class JobCreate(BaseModel):
    """POST /v1/fine_tuning/jobs. Extra fields are TuneForge training options (``max_length``,
    ``learning_rate``, ``columns``, ``early_stopping_patience`` ... see ``tuneforge train --help``)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "model": "minilm", "training_file": "file-abc123", "metadata": {"task": "classification"},
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3}}}}]})

    model: str = Field(description="Base model (`GET /v1/models`) or one of your fine-tuned models.")
    training_file: str
    validation_file: str | None = None
    suffix: str | None = Field(None, max_length=64)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    metadata: dict[str, str] | None = Field(None, description="Up to 16 string pairs; `task` chooses the task: "
                                                              "classification, ner, qa or generation (inferred from "
                                                              "the training file's format when not given: a chat, "
                                                              "prompt/completion, Alpaca, ShareGPT or preference "
                                                              "file is generation).")
    method: MethodIn | None = Field(None, description="`supervised` (default: LoRA SFT for generation, full "
                                                      "fine-tuning for the encoder tasks) or `dpo` (generation, on "
                                                      "preference pairs), with its hyperparameters.")
    hyperparameters: Hyperparameters | None = Field(None, description="Deprecated by OpenAI: use method.")
    integrations: list[dict[str, Any]] | None = None


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


def _hyperparameters(job: Job) -> dict[str, Any]:
    hp: dict[str, Any] = {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}
    if job.method == "dpo":
        hp["beta"] = "auto"
    hp.update({k: v for k, v in (job.hyperparameters or {}).items() if k in hp})
    return hp


class JobPublic(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    hyperparameters: dict[str, Any]
    model: str
    organization_id: str
    result_files: list[str] = Field(default_factory=list, description="A succeeded job's metrics per step, as a "
                                                                       "CSV file (download with /content).")
    seed: int
    status: str
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    estimated_finish: int | None = Field(None, description="A running job: when it will finish, at the rate it "
                                                           "trains.")
    integrations: list[Any] = Field(default_factory=list)
    metadata: dict[str, str] | None = None
    method: dict[str, Any]
    user_provided_suffix: str | None = None
    task: str
    options: dict[str, Any] = Field(default_factory=dict, description="TuneForge training options of the job.")
    attempt: int = Field(0, description="Trainings started: 1 for the first (0 while its files are validated).")
    failed_attempts: int = 0

    @classmethod
    def of(cls, j: Job, *, estimated_finish: datetime | None = None,
           result_files: list[str] | None = None) -> JobPublic:
        from tuneforge.jobs.states import FINAL

        hp = _hyperparameters(j)
        err = JobError(code=j.error_code, message=j.error_message or "", param=j.error_param) if j.error_code else None
        # a cancelled job is cancelled at once for its owner, while its training stops at its next step
        status = "cancelled" if j.control == "cancel" and j.status not in FINAL else j.status
        return cls(id=j.id, created_at=_ts(j.created_at) or 0, error=err, fine_tuned_model=j.fine_tuned_model,
                   finished_at=_ts(j.finished_at), hyperparameters=hp, model=j.base_model,
                   organization_id=j.tenant_id, seed=j.seed, status=status, trained_tokens=j.trained_tokens,
                   estimated_finish=_ts(estimated_finish), result_files=list(result_files or []),
                   training_file=j.training_file_id, validation_file=j.validation_file_id, metadata=j.meta,
                   method={"type": j.method, j.method: {"hyperparameters": hp}},
                   user_provided_suffix=j.suffix, task=j.task, options=j.options or {}, attempt=j.training_attempt,
                   failed_attempts=j.failures)


class EventPublic(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: str
    message: str
    data: dict[str, Any] | None = None
    type: str

    @classmethod
    def of(cls, e: JobEvent) -> EventPublic:
        return cls(id=e.id, created_at=_ts(e.created_at) or 0, level=e.level, message=e.message, data=e.data,
                   type=e.type)


class CheckpointPublic(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: dict[str, Any]
    step_number: int

    @classmethod
    def of(cls, c: Checkpoint, model: str) -> CheckpointPublic:
        """``model``: the job's fine-tuned model id; the checkpoint's is ``<model>:ckpt-step-<step>``."""
        return cls(id=c.id, created_at=_ts(c.created_at) or 0,
                   fine_tuned_model_checkpoint=f"{model}:ckpt-step-{c.step}",
                   fine_tuning_job_id=c.job_id, metrics=c.metrics or {}, step_number=c.step)


# ----------------------------------------------------------------------------------------------------- models
class ModelPublic(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    task: str | None = Field(None, description="classification, ner, qa or generation (a base chat model too); "
                                               "none for a base encoder.")
    base_model: str | None = None
    parent: str | None = Field(None, description="Fine-tuned models: the model it was trained from (as vLLM lists "
                                                 "LoRA models); none for a base model.")
    fine_tuning_job: str | None = None
    language: str | None = Field(None, description="Base models: the languages it was pretrained on.")
    parameters: str | None = Field(None, description="Base models: its size, e.g. 22.7M.")
    description: str | None = Field(None, description="Base models: what it suits.")
    backend: dict[str, Any] | None = Field(None, description="Fine-tuned models once loaded: what serves it (torch, "
                                                             "onnx, onnx-int8 ...; with auto, the measurements).")

    @classmethod
    def of(cls, m: Model, owner: str) -> ModelPublic:
        return cls(id=m.id, created=_ts(m.created_at) or 0, owned_by=owner, task=m.task, base_model=m.base_model,
                   parent=m.base_model, fine_tuning_job=m.job_id)


class ModelDeleted(BaseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = True


# -------------------------------------------------------------------------------------------------- inference
class PredictCreate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "ft:minilm:acme:Ab12Cd34", "inputs": ["a delight from start to finish"]}]})
    model: str = Field(description="A fine-tuned model id.")
    inputs: list[str | dict[str, Any]] = Field(
        min_length=1, description='Texts (classification, ner), {"text", "text_pair"} pairs, or '
                                  '{"question", "context"} (qa).')
    explain: bool = Field(False, description="Also explain each prediction (classification, ner): each word's "
                                             "attribution by integrated gradients, under `explanation`; at most "
                                             "8 inputs per request, each costing ~50 forward passes.")
    explain_label: str | None = Field(None, description="With explain: the label (ner: entity type) to explain "
                                                        "instead of the predicted one.")


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class PredictPublic(BaseModel):
    object: Literal["list"] = "list"
    model: str
    task: str
    data: list[dict[str, Any]]
    usage: Usage


class EmbeddingCreate(BaseModel):
    input: str | list[str] | list[int] | list[list[int]]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


class EmbeddingsPublic(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    model: str
    usage: Usage


# ------------------------------------------------------------------------------------------------------ usage
class UsagePublic(BaseModel):
    object: Literal["usage"] = "usage"
    tenant: str
    plan: str
    trial_ends_at: int | None
    start: str
    end: str
    data: list[dict[str, Any]]
    totals: dict[str, int]
    quotas: dict[str, dict[str, int | None]]


# ------------------------------------------------------------------------------------------ datasets (files)
class ProblemPublic(BaseModel):
    """One problem in a data file: the file name, 1-based line, field, what is wrong and what to do."""

    file: str
    line: int | None
    field: str | None
    message: str
    hint: str | None = None

    @classmethod
    def of(cls, p: Any) -> ProblemPublic:
        return cls(file=p.file, line=p.line, field=p.field, message=p.message, hint=p.hint)


class FilePreviewPublic(BaseModel):
    object: Literal["file.preview"] = "file.preview"
    file: FilePublic
    task: str = Field(description="The task the file was validated for (guessed from its columns if not given).")
    format: str
    records: int = Field(description="Records read from the file.")
    columns: list[str]
    rows: list[dict[str, Any]] = Field(description="The first records, each with its 1-based `line`.")
    valid: bool
    examples: int = Field(description="Valid examples for the task (0 when the file has problems).")
    problems: list[ProblemPublic] = Field(description="Every problem, by line; a job on this file would fail.")
    warnings: list[ProblemPublic]
    labels: dict[str, int] = Field(description="Examples per label (classification) or entities per type (ner).")
    multi_label: bool = False


class CleanCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: TaskName
    lowercase: bool = False
    strip_html: bool = True
    dedupe: bool = Field(True, description="Drop exact duplicates, keeping the first.")
    near_dedupe: bool = Field(True, description="Drop near-duplicates with the same label (classification).")
    drop_conflicts: bool = Field(True, description="Drop texts that appear with different labels.")
    min_chars: int = Field(1, ge=0)
    max_chars: int | None = Field(None, ge=1)


class CleanPublic(BaseModel):
    object: Literal["file.clean"] = "file.clean"
    file: FilePublic = Field(description="The cleaned data, stored as a new file.")
    kept: int
    changed: int
    counts: dict[str, int] = Field(description="Removed examples per reason.")
    label_renames: dict[str, str]
    removed: list[dict[str, Any]] = Field(description="Each removed example: line, reason, detail.")


class SplitCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: TaskName
    dev: float = Field(0.1, ge=0, lt=1, description="Share of the examples for the dev (validation) file.")
    test: float = Field(0.1, ge=0, lt=1, description="Share held out for a final test.")
    seed: int = Field(0, ge=0)


class SplitPublic(BaseModel):
    object: Literal["file.split"] = "file.split"
    files: dict[str, FilePublic] = Field(description="train, dev and test (those asked for), as new files.")


# ------------------------------------------------------------------------------------------------- estimates
class EstimatePublic(BaseModel):
    object: Literal["fine_tuning.estimate"] = "fine_tuning.estimate"
    model: str
    task: str
    training_file: str
    examples: int
    tokens_per_epoch: int
    epochs: float
    trained_tokens: int = Field(description="Tokens the job would train: tokens per epoch times epochs.")
    quota: dict[str, int] = Field(description="This month's trained-token quota: limit, used, remaining.")
    within_quota: bool


# ------------------------------------------------------------------------------------------------ evaluation
class EvaluationPublic(BaseModel):
    object: Literal["model.evaluation"] = "model.evaluation"
    model: str
    task: str | None
    labels: list[str]
    multi_label: bool
    max_length: int | None
    base_model: str | None
    method: str | None
    training: dict[str, Any]
    evaluation: dict[str, Any] | None = Field(
        description="The dev evaluation: metrics, per_class (precision/recall/F1/support per class or entity "
                    "type), confusion_matrix {labels, matrix}, report_markdown; slices {report, slices, summary} and "
                    "robustness {report, metric, perturbations} from the first report of `tuneforge evaluate "
                    "--slice-by/--robustness` in the model's folder (else null); null without a validation file.")


# ------------------------------------------------------------------------------------------------- API keys
class ApiKeyPublic(BaseModel):
    id: str
    object: Literal["api_key"] = "api_key"
    name: str
    prefix: str = Field(description="The first characters of the secret, for recognising the key.")
    scopes: list[str]
    created_at: int
    revoked_at: int | None = None

    @classmethod
    def of(cls, k: ApiKey) -> ApiKeyPublic:
        return cls(id=k.id, name=k.name, prefix=k.prefix, scopes=k.scopes.split(), created_at=_ts(k.created_at) or 0,
                   revoked_at=_ts(k.revoked_at))


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("", max_length=100)
    scopes: list[Literal["train", "predict", "admin"]] = Field(min_length=1)


class ApiKeyCreated(ApiKeyPublic):
    secret: str = Field(description="The key itself: shown in this response only, never again.")


class WhoAmIPublic(BaseModel):
    object: Literal["api_key.current"] = "api_key.current"
    tenant: str
    plan: str
    key_id: str
    scopes: list[str]
    trial_ends_at: int | None
