"""Generative fine-tuning (chat SFT and preference pairs): data, chat template rendering, batching, metrics.

The foundations of the ``generation`` task: :mod:`.data` reads and validates the six data layouts into one
example shape, :mod:`.template` renders them with the tokenizer's own chat template (training labels and
generation prompts from one function), :mod:`.collate` pads or packs batches, :mod:`.metrics` computes
OpenAI-named token metrics and EM / F1 / ROUGE-L, :mod:`.preference` holds preference pairs (DPO): pair features
and batches, sequence log-probabilities, the DPO loss and preference accuracy, and :mod:`.budget` holds OpenAI's
epoch and billing rules.
:mod:`.task` is the task object (:class:`GenerationTask`), registered when ``tuneforge.tasks`` imports this
package.
"""

from tuneforge.tasks.base import register_task
from tuneforge.tasks.generation.budget import DEFAULT_EPOCHS, auto_epochs, check_tokens, resolve_epochs, token_summary
from tuneforge.tasks.generation.collate import PackingCollator, PaddingCollator, left_pad, pad_token_id
from tuneforge.tasks.generation.data import (
    FORMATS,
    MIN_EXAMPLES,
    PREFERENCE_FORMATS,
    SFT_FORMATS,
    CodedProblem,
    GenerationData,
    detect_format,
    normalize_row,
    parse_prompt,
    read_generation_data,
)
from tuneforge.tasks.generation.metrics import (
    TokenStats,
    named_token_metrics,
    preference_accuracy,
    rouge_l,
    sequence_logprobs,
    text_scores,
    token_stats,
)
from tuneforge.tasks.generation.preference import PairCollator, PreferenceLoss, encode_pairs, is_pair
from tuneforge.tasks.generation.task import GenerationTask, split_reference
from tuneforge.tasks.generation.template import (
    IGNORE_INDEX,
    Rendered,
    RenderedSet,
    chat_template,
    end_of_turn_ids,
    length_problems,
    render_dataset,
    render_example,
    render_pair,
    render_prompt,
    render_prompt_text,
)

TASK = register_task(GenerationTask())

__all__ = [
    "DEFAULT_EPOCHS",
    "FORMATS",
    "TASK",
    "IGNORE_INDEX",
    "MIN_EXAMPLES",
    "PREFERENCE_FORMATS",
    "SFT_FORMATS",
    "CodedProblem",
    "GenerationData",
    "GenerationTask",
    "PackingCollator",
    "PairCollator",
    "PaddingCollator",
    "PreferenceLoss",
    "Rendered",
    "RenderedSet",
    "TokenStats",
    "auto_epochs",
    "chat_template",
    "check_tokens",
    "detect_format",
    "encode_pairs",
    "end_of_turn_ids",
    "is_pair",
    "left_pad",
    "length_problems",
    "named_token_metrics",
    "normalize_row",
    "pad_token_id",
    "parse_prompt",
    "preference_accuracy",
    "read_generation_data",
    "render_dataset",
    "render_example",
    "render_pair",
    "render_prompt",
    "render_prompt_text",
    "resolve_epochs",
    "rouge_l",
    "sequence_logprobs",
    "split_reference",
    "text_scores",
    "token_stats",
    "token_summary",
]
