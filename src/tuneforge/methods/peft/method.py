"""One class for the peft family; each instance knows how to build its peft config from its options."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError
from tuneforge.methods.base import FitContext, FitResult, MethodDefaults, MethodOptions
from tuneforge.methods.common import auto_model_class, head_module_names, no_own_loop
from tuneforge.methods.peft.config import LoraOptions, PromptOptions

__all__ = ["PEFT_METHODS", "PeftMethod"]

ADAPTER_FILES = ["adapter_model.safetensors", "adapter_config.json"]
#: a task's ``auto_model_kind`` -> peft's TaskType name
TASK_TYPES = {"sequence-classification": "SEQ_CLS", "token-classification": "TOKEN_CLS",
              "question-answering": "QUESTION_ANS", "causal-lm": "CAUSAL_LM"}


def _task_type(task: Any) -> Any:
    from peft import TaskType

    kind = getattr(task, "auto_model_kind", "")
    if kind not in TASK_TYPES:
        raise ConfigError(f"task: peft methods do not know the head of {task.name} (auto_model_kind {kind!r})")
    return TaskType[TASK_TYPES[kind]]


def _saved_modules(model: Any, task: Any) -> list[str] | None:
    """The task head, trained and saved whole beside the adapter; a generative model has none (its LM head is
    the pretrained one, often tied to the embeddings)."""
    return None if task.generative else head_module_names(model)


#: Every linear layer of a BERT/RoBERTa/XLM-R encoder block: the four attention projections and the feed-forward
#: pair ("output.dense" also names the attention's output projection). Measured on SST-2 (2,000 sentences, 3
#: epochs, minilm, seeds 42/1/2; full fine-tuning 0.828): the four attention projections at rank 8 (1.29% of the
#: parameters trainable) 0.802; every linear layer at rank 4, alpha 16 (1.37%) 0.822; at rank 8 (2.07%) 0.819.
#: peft's own default for BERT, query and value only, is lower still (0.762 against 0.788 at one epoch). The same
#: budget spread over more matrices at a lower rank is the LoRA paper's finding too (Hu et al. 2021, table 6).
ENCODER_LINEARS = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]


def lora_targets(options: LoraOptions, model: Any) -> list[str] | None:
    """The layers LoRA adapts: the configured ones, else every linear layer of a BERT-like encoder block, else
    peft's default for the architecture."""
    if options.lora_target_modules:
        return list(options.lora_target_modules)
    names = {n for n, _ in model.named_modules()}
    if all(any(n.endswith(t) for n in names) for t in ENCODER_LINEARS):
        return ENCODER_LINEARS
    return None


#: LoRA on an encoder where the run leaves an option unset (rank 4 on every linear layer: see ENCODER_LINEARS)
ENCODER_LORA: dict[str, Any] = {"lora_r": 4, "lora_alpha": 16, "lora_dropout": 0.1}
#: LoRA on a chat model (generation) where the run leaves an option unset: rank 16, alpha 32, dropout 0.05 on
#: every linear layer of the decoder (peft's "all-linear", the LM head excepted), the common SFT recipe of TRL,
#: LLaMA-Factory and QLoRA (Dettmers et al. 2023 found adapting every layer matters more than the rank). peft's
#: own default for Llama, q_proj and v_proj, learns a new answer format far more slowly.
GENERATIVE_LORA: dict[str, Any] = {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05,
                                   "lora_target_modules": "all-linear"}


def lora_settings(opts: LoraOptions, model: Any, task: Any) -> dict[str, Any]:
    """r, alpha, dropout and target modules of a LoRA run: what the run sets, else the task family's default."""
    defaults = GENERATIVE_LORA if task.generative else ENCODER_LORA
    chosen = {k: defaults[k] if getattr(opts, k) is None else getattr(opts, k)
              for k in ("lora_r", "lora_alpha", "lora_dropout")}
    chosen["lora_target_modules"] = (defaults["lora_target_modules"] if task.generative and not
                                     opts.lora_target_modules else lora_targets(opts, model))
    return chosen


def _lora(opts: Any, model: Any, task: Any, total_steps: int) -> Any:
    from peft import LoraConfig

    s = lora_settings(opts, model, task)
    return LoraConfig(task_type=_task_type(task), r=s["lora_r"], lora_alpha=s["lora_alpha"],
                      lora_dropout=s["lora_dropout"], target_modules=s["lora_target_modules"],
                      modules_to_save=_saved_modules(model, task))


def _adalora(opts: Any, model: Any, task: Any, total_steps: int) -> Any:
    from peft import AdaLoraConfig

    # AdaLoRA starts every matrix at a larger rank and prunes to lora_r on average; budget schedule in steps
    tinit = max(1, total_steps // 10)
    tfinal = max(1, total_steps // 5)
    if tinit + tfinal >= total_steps:
        tinit, tfinal = 0, max(0, total_steps // 2 - 1)
    st = lora_settings(opts, model, task)
    r = st["lora_r"]
    return AdaLoraConfig(task_type=_task_type(task), init_r=max(r + 4, int(r * 1.5)),
                         target_r=r, lora_alpha=st["lora_alpha"], lora_dropout=st["lora_dropout"],
                         target_modules=st["lora_target_modules"], total_step=max(total_steps, 2),
                         tinit=tinit, tfinal=tfinal, deltaT=max(1, total_steps // 20),
                         modules_to_save=_saved_modules(model, task))


def _ia3(opts: Any, model: Any, task: Any, total_steps: int) -> Any:
    from peft import IA3Config

    return IA3Config(task_type=_task_type(task), modules_to_save=_saved_modules(model, task))


def _prompt(opts: Any, model: Any, task: Any, total_steps: int) -> Any:
    from peft import PromptTuningConfig

    return PromptTuningConfig(task_type=_task_type(task), num_virtual_tokens=opts.num_virtual_tokens,
                              modules_to_save=_saved_modules(model, task))


def _ptuning(opts: Any, model: Any, task: Any, total_steps: int) -> Any:
    from peft import PromptEncoderConfig

    return PromptEncoderConfig(task_type=_task_type(task), num_virtual_tokens=opts.num_virtual_tokens,
                               encoder_hidden_size=model.config.hidden_size,
                               modules_to_save=_saved_modules(model, task))


@dataclass
class PeftMethod(MethodDefaults):
    name: str
    summary: str
    #: builds the peft config from (the method's options, the task model, the task, total training steps)
    make_config: Callable[[Any, Any, Any, int], Any]
    options_class: type[MethodOptions] = MethodOptions
    #: whether tasks with per-token outputs (NER, QA) are supported: virtual tokens shift them, and peft 0.21 does
    #: not realign their labels
    per_token: bool = True
    mergeable: bool = True
    lr_scale: float = 5.0
    own_loop: bool = False
    #: whether generative tasks (causal LMs) are supported
    generative: bool = False
    #: whether the best dev checkpoint can be reloaded at the end (AdaLoRA's ranks shrink during training, so an
    #: earlier checkpoint no longer fits the model; P-tuning checkpoints hold the prompt encoder's output, which
    #: Trainer's reload feeds through the encoder again): those keep their last state
    reload_best: bool = True

    def supports(self, task: Any) -> bool:
        if task.generative:
            return self.generative
        return self.per_token or not task.per_token

    def prepare(self, model: Any, config: Any, task: Any, *, total_steps: int = 100) -> Any:
        from peft import get_peft_model

        try:
            peft_config = self.make_config(self.options(config), model, task, total_steps)
            return get_peft_model(model, peft_config)
        except ValueError as e:  # e.g. no default target modules for this architecture
            raise ConfigError(f"method: {self.name} cannot wrap {type(model).__name__}: {e}",
                              hint="Name the layers with lora_target_modules (e.g. [query, value]).") from None

    def trainer_callbacks(self, model: Any) -> list[Any]:
        if self.name != "adalora":
            return []
        from transformers import TrainerCallback

        class _AdaLoraBudget(TrainerCallback):
            """AdaLoRA re-allocates ranks after each optimizer step (peft's documented training-loop hook)."""

            def on_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                model.base_model.update_and_allocate(state.global_step)

        return [_AdaLoraBudget()]

    def fit(self, ctx: FitContext) -> FitResult:
        return no_own_loop(self.name)  # type: ignore[no-any-return]

    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        model.save_pretrained(str(folder), safe_serialization=True)
        return {"files": ADAPTER_FILES,
                "saved_bytes": sum((folder / f).stat().st_size for f in ADAPTER_FILES if (folder / f).exists())}

    def load(self, run_dir: Path, manifest: dict[str, Any], base_path: Path | None, task: Any) -> Any:
        from peft import PeftModel

        from tuneforge.utils.hf import quiet_transformers

        if base_path is None:
            raise ConfigError(f"{run_dir} holds a {self.name} adapter but its base model cannot be found")
        quiet_transformers()
        base = _base_with_head(manifest, base_path, task)
        model = PeftModel.from_pretrained(base, str(run_dir), is_trainable=False)
        model.eval()
        return model

    def merge(self, model: Any) -> Any:
        if not self.mergeable:
            raise ConfigError(f"method: {self.name} cannot be merged into the base model (its virtual tokens are "
                              "extra inputs, not weight changes)",
                              hint="Serve the run folder as it is; it loads its base model by itself.")
        return model.merge_and_unload()


def _base_with_head(manifest: dict[str, Any], base_path: Path, task: Any) -> Any:
    """The base model with an (untrained) head of the run's shape; peft restores the trained head over it."""
    labels = manifest.get("labels") or ["start_end"]
    id2label = {i: x for i, x in enumerate(labels)}
    kwargs: dict[str, Any] = {}
    if task.labelled:
        kwargs = {"num_labels": len(labels), "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}
    if task.multi_label_capable:
        kwargs["problem_type"] = ("multi_label_classification" if manifest.get("multi_label")
                                  else "single_label_classification")
    return auto_model_class(task).from_pretrained(str(base_path), use_safetensors=True,
                                                              trust_remote_code=False, ignore_mismatched_sizes=True,
                                                              **kwargs)


PEFT_METHODS = [
    PeftMethod("lora", "Low-rank updates of the attention projections (peft LoRA): ~0.3% of minilm's weights "
                       "train, a few MB saved; merges into the base for export.", _lora, LoraOptions, generative=True),
    PeftMethod("adalora", "LoRA whose ranks are re-allocated during training to the matrices that need them "
                          "(peft AdaLoRA).", _adalora, LoraOptions, reload_best=False),
    PeftMethod("ia3", "Learned rescaling of keys, values and feed-forward activations (peft IA3): the fewest "
                      "trainable weights.", _ia3, lr_scale=20.0),
    PeftMethod("prompt_tuning", "Trainable virtual tokens prepended to the input (peft prompt tuning); "
                                "classification only.", _prompt, PromptOptions, per_token=False,
               mergeable=False, lr_scale=50.0),
    PeftMethod("p_tuning", "Virtual tokens produced by a small prompt encoder (peft P-tuning); classification "
                           "only.", _ptuning, PromptOptions, per_token=False, mergeable=False, lr_scale=10.0,
               reload_best=False),
]
