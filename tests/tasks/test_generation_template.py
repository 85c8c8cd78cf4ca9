"""Chat-template rendering: which tokens are learned, and identical prompt ids on every path.

A tiny byte-level BPE tokenizer is trained in-process (milliseconds) and given chat templates written here:
ChatML (SmolLM2's markup), a Zephyr-style one with a different end-of-turn token, one with ``{% generation %}``
blocks, and one that is not prefix-stable.
"""

from __future__ import annotations

import pytest

from tuneforge.errors import ConfigError
from tuneforge.tasks.generation.template import (
    IGNORE_INDEX,
    chat_template,
    end_of_turn_ids,
    length_problems,
    render_dataset,
    render_example,
    render_pair,
    render_prompt,
    render_prompt_text,
)

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
ZEPHYR = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '</s>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
GENERATION_BLOCKS = (
    "{% for message in messages %}{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# renders the last message differently from earlier ones, so a conversation's start is not a prefix of it
UNSTABLE = (
    "{% for message in messages %}{% if loop.last %}{{ '[LAST ' + message['role'] + '] ' }}{% endif %}"
    "{{ message['content'] + '<|im_end|>' }}{% endfor %}{% if add_generation_prompt %}{{ '>>' }}{% endif %}"
)

CORPUS = [
    "Where is the Eiffel Tower? It is in Paris, the capital of France.",
    "You are a helpful assistant. Say hello. Hello there! How can I help you today?",
    "system user assistant The answer is 42. Thanks so much, that is all I need.",
    "Reset your password from the settings page, then sign in again.",
]


def tiny_tokenizer(template: str = CHATML, eos: str = "<|im_end|>"):
    """A byte-level BPE tokenizer (vocab ~400) with ``template`` as its chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|user|>", "<|assistant|>", "<|system|>", "</s>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 3, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token="<|endoftext|>",
                                   chat_template=template)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def conv(*turns: tuple[str, str] | tuple[str, str, int]) -> list[dict]:
    out = []
    for t in turns:
        m = {"role": t[0], "content": t[1]}
        if len(t) == 3:
            m["weight"] = t[2]
        out.append(m)
    return out


def learned_text(tokenizer, rendered) -> str:
    return tokenizer.decode([i for i, lab in zip(rendered.input_ids, rendered.labels, strict=True)
                             if lab != IGNORE_INDEX])


def learned_runs(rendered) -> list[list[int]]:
    runs: list[list[int]] = []
    prev = False
    for i, lab in zip(rendered.input_ids, rendered.labels, strict=True):
        on = lab != IGNORE_INDEX
        if on and not prev:
            runs.append([])
        if on:
            assert lab == i
            runs[-1].append(i)
        prev = on
    return runs


def test_only_the_reply_and_its_end_of_turn_token_are_learned(tok):
    msgs = conv(("system", "You are a helpful assistant."), ("user", "Where is the Eiffel Tower?"),
                ("assistant", "It is in Paris."))
    r = render_example(tok, msgs)
    assert len(r.input_ids) == len(r.labels)
    assert learned_text(tok, r) == "It is in Paris.<|im_end|>\n"
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    runs = learned_runs(r)
    assert len(runs) == 1 and runs[0][-2] == eot  # the end-of-turn token is trained: the model learns to stop
    # the system and user turns (their own <|im_end|> included) and the "assistant" header carry -100
    prompt = render_prompt(tok, msgs[:2])
    assert all(lab == IGNORE_INDEX for lab in r.labels[: len(prompt)])
    assert r.input_ids.count(eot) == 3 and r.labels.count(eot) == 1
    # the newline ChatML writes after <|im_end|> is learned too, as TRL's completion mask does (never generated)
    assert r.labels[-1] == r.input_ids[-1] and tok.decode(r.input_ids[-1:]) == "\n"


def test_every_assistant_turn_is_learned_and_weight_zero_is_respected(tok):
    msgs = conv(("user", "Say hello."), ("assistant", "Hello there!"), ("user", "The answer?"),
                ("assistant", "The answer is 42."), ("user", "Thanks so much."), ("assistant", "Have a great day."))
    runs = learned_runs(render_example(tok, msgs))
    assert [tok.decode(x) for x in runs] == ["Hello there!<|im_end|>\n", "The answer is 42.<|im_end|>\n",
                                            "Have a great day.<|im_end|>\n"]
    msgs[3]["weight"] = 0
    r = render_example(tok, msgs)
    assert [tok.decode(x) for x in learned_runs(r)] == ["Hello there!<|im_end|>\n", "Have a great day.<|im_end|>\n"]
    # the weight-0 reply is still in the input, as context
    assert "The answer is 42." in tok.decode(r.input_ids)


def test_prompt_ids_of_a_training_example_equal_the_generation_prompt_rendering(tok):
    msgs = conv(("system", "Be brief."), ("user", "Where is the Eiffel Tower?"), ("assistant", "Paris."),
                ("user", "Reset my password?"), ("assistant", "Use the settings page."))
    r = render_example(tok, msgs)
    starts = [i for i in range(1, len(r.labels)) if r.labels[i] != IGNORE_INDEX and r.labels[i - 1] == IGNORE_INDEX]
    for turn, start in zip((2, 4), starts, strict=True):
        prompt = render_prompt(tok, msgs[:turn])
        assert prompt == r.input_ids[:start]  # what predict/chat/serving feed generate == what training saw
        assert tok.apply_chat_template(msgs[:turn], add_generation_prompt=True, tokenize=True,
                                       return_dict=True)["input_ids"] == prompt  # and what transformers renders
    assert render_prompt_text(tok, msgs[:2]).endswith("<|im_start|>assistant\n")


def test_any_template_works_without_special_cases():
    tok = tiny_tokenizer(ZEPHYR, eos="</s>")
    msgs = conv(("user", "Say hello."), ("assistant", "Hello there!"), ("user", "Thanks."), ("assistant", "Bye."))
    r = render_example(tok, msgs)
    assert [tok.decode(x) for x in learned_runs(r)] == ["Hello there!</s>\n", "Bye.</s>\n"]
    assert render_prompt(tok, msgs[:3]) == r.input_ids[: len(render_prompt(tok, msgs[:3]))]


def test_generation_blocks_use_the_assistant_mask_and_keep_weights():
    tok = tiny_tokenizer(GENERATION_BLOCKS)
    msgs = conv(("user", "Say hello."), ("assistant", "Hello there!", 0), ("user", "The answer?"),
                ("assistant", "The answer is 42."))
    r = render_example(tok, msgs)
    assert [tok.decode(x) for x in learned_runs(r)] == ["The answer is 42.<|im_end|>"]  # the marked text only


def test_a_template_that_is_not_prefix_stable_is_refused_with_a_message():
    tok = tiny_tokenizer(UNSTABLE)
    with pytest.raises(ConfigError, match="prefix-stable"):
        render_example(tok, conv(("user", "Say hello."), ("assistant", "Hello.")))


def test_a_tokenizer_without_chat_template_is_a_clear_error():
    tok = tiny_tokenizer()
    tok.chat_template = None
    with pytest.raises(ConfigError, match="no chat template"):
        chat_template(tok)
    with pytest.raises(ConfigError, match="no chat template"):
        render_prompt(tok, conv(("user", "hi")))


def test_end_of_turn_ids_merge_tokenizer_and_generation_config(tok):
    class Gen:
        eos_token_id = [7, 8]

    assert end_of_turn_ids(tok) == {tok.convert_tokens_to_ids("<|im_end|>")}
    assert end_of_turn_ids(tok, Gen()) == {tok.convert_tokens_to_ids("<|im_end|>"), 7, 8}


def test_render_dataset_truncates_and_counts(tok):
    long = conv(("user", "Where is the Eiffel Tower? " * 8), ("assistant", "Paris."))
    short = conv(("user", "Say hello."), ("assistant", "Hello there!"))
    full_long = render_example(tok, long)
    out = render_dataset(tok, [{"messages": short}, {"messages": long}], max_length=40)
    assert out.truncated == 1 and out.lengths[1] == len(full_long.input_ids) > 40
    assert len(out.features[1]["input_ids"]) == 40 == len(out.features[1]["labels"])
    assert out.untrainable == [1]  # the reply fell past max_length: nothing left to learn
    assert out.features[0] == render_example(tok, short).feature()
    assert out.total_tokens == sum(out.lengths)


def test_render_pair_shares_the_prompt_and_learns_only_the_answers(tok):
    ex = {"prompt": conv(("user", "Say hello."), ("assistant", "Hello there!"), ("user", "The answer?")),
          "chosen": [{"role": "assistant", "content": "The answer is 42."}],
          "rejected": [{"role": "assistant", "content": "No."}]}
    chosen, rejected = render_pair(tok, ex)
    assert learned_text(tok, chosen) == "The answer is 42.<|im_end|>\n"
    assert learned_text(tok, rejected) == "No.<|im_end|>\n"
    prompt = render_prompt(tok, ex["prompt"])
    assert chosen.input_ids[: len(prompt)] == rejected.input_ids[: len(prompt)] == prompt


def test_length_problems_name_the_line():
    problems = length_problems([10, 300, 20], [1, 2, 3], 256, file="chat.jsonl")
    assert len(problems) == 1 and problems[0].line == 2
    assert "300 tokens" in str(problems[0]) and "256" in str(problems[0])
