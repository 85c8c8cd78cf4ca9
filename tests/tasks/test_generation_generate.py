"""The one decoding path (tuneforge.tasks.generation.generate) on a tiny Llama built in-process: greedy output equals
transformers' own ``model.generate``, seeded sampling repeats, stop strings and end-of-turn ids end a reply with
``finish_reason`` "stop" (``max_new_tokens`` with "length"), streamed deltas join to exactly the returned text, and
the task's ``predict`` feeds the model the ids ``render_prompt`` gives."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import torch

from tests.tasks.test_generation_collate import tiny_llama
from tests.tasks.test_generation_template import tiny_tokenizer
from tuneforge.errors import ConfigError
from tuneforge.tasks import get_task
from tuneforge.tasks.generation.generate import GenerationOptions, context_length, generate, stream
from tuneforge.tasks.generation.template import render_prompt

QUESTIONS = ["Where is the Eiffel Tower?", "Say hello.", "What is the answer to everything, please?",
             "How do I reset my password from the settings page?"]


@pytest.fixture(scope="module")
def tok() -> Any:
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tok: Any) -> Any:
    m = tiny_llama(tok)
    m.generation_config.eos_token_id = tok.eos_token_id
    return m


@pytest.fixture(scope="module")
def prompts(tok: Any) -> list[list[int]]:
    return [render_prompt(tok, [{"role": "user", "content": q}]) for q in QUESTIONS]


def plain_generate(model: Any, tok: Any, prompt: list[int], new: int, eos: list[int] | None = None) -> list[int]:
    """transformers' own greedy decoding of one prompt, cut at the end-of-turn token."""
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=False,
                             eos_token_id=eos or [tok.eos_token_id], pad_token_id=tok.pad_token_id)
    row = out[0, len(prompt):].tolist()
    ends = [i for i, t in enumerate(row) if t in (eos or [tok.eos_token_id])]
    return row[: ends[0]] if ends else row


def test_greedy_equals_model_generate_alone_and_in_left_padded_batches(model: Any, tok: Any,
                                                                       prompts: list[list[int]]) -> None:
    expected = [plain_generate(model, tok, p, 12) for p in prompts]
    for batch_size in (1, 4):
        gens = generate(model, tok, prompts, GenerationOptions(max_new_tokens=12), batch_size=batch_size)
        assert [g.token_ids for g in gens] == expected
        assert [g.text for g in gens] == [tok.decode(e, skip_special_tokens=True).strip() for e in expected]
        assert all(g.finish_reason == "length" and g.completion_tokens == 12 for g in gens)
        assert [g.prompt_tokens for g in gens] == [len(p) for p in prompts]
        assert gens[0].usage() == {"prompt_tokens": len(prompts[0]), "completion_tokens": 12,
                                   "total_tokens": len(prompts[0]) + 12}


def test_an_end_of_turn_id_ends_the_reply_with_finish_reason_stop(model: Any, tok: Any,
                                                                  prompts: list[list[int]]) -> None:
    greedy = plain_generate(model, tok, prompts[0], 10)
    end = greedy[3]  # make the fourth greedy token an end-of-turn token of the model's generation config
    first = greedy.index(end)
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [tok.eos_token_id, end]
    try:
        [g] = generate(model, tok, [prompts[0]], GenerationOptions(max_new_tokens=10))
    finally:
        model.generation_config.eos_token_id = saved
    assert g.finish_reason == "stop"
    assert g.token_ids == greedy[:first] and g.completion_tokens == first + 1  # the end-of-turn token counts


def test_a_stop_string_cuts_the_text_before_it(model: Any, tok: Any, prompts: list[list[int]]) -> None:
    [full] = generate(model, tok, [prompts[0]], GenerationOptions(max_new_tokens=20))
    text = full.text
    start = next(i for i in range(4, len(text) - 3) if text[i:i + 3].strip() == text[i:i + 3] and "\ufffd" not in
                 text[i:i + 3])
    stop = text[start:start + 3]
    [cut] = generate(model, tok, [prompts[0]], GenerationOptions(max_new_tokens=20, stop=["never-there", stop]))
    assert cut.finish_reason == "stop"
    assert cut.text == text[: text.find(stop)].rstrip() and stop not in cut.text
    assert cut.completion_tokens < 20  # generation ended at the stop string, not at max_new_tokens
    assert cut.token_ids == full.token_ids[: cut.completion_tokens]
    [unmatched] = generate(model, tok, [prompts[0]], GenerationOptions(max_new_tokens=20, stop="never-there"))
    assert unmatched.finish_reason == "length" and unmatched.text == text


def test_the_same_seed_samples_the_same_replies_and_another_seed_others(model: Any, tok: Any,
                                                                        prompts: list[list[int]]) -> None:
    def sample(seed: int) -> list[str]:
        opts = GenerationOptions(max_new_tokens=16, temperature=1.0, seed=seed)
        return [g.text for g in generate(model, tok, prompts, opts, batch_size=2)]

    state = torch.get_rng_state()
    a, b, c = sample(1), sample(1), sample(2)
    assert a == b and a != c
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is left as it was
    greedy = [g.text for g in generate(model, tok, prompts, GenerationOptions(max_new_tokens=16))]
    assert a != greedy


def test_sampling_options_reach_model_generate(model: Any, tok: Any, prompts: list[list[int]],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []
    original = type(model).generate

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "generate", spy)
    opts = GenerationOptions(max_new_tokens=4, temperature=0.7, top_p=0.9, top_k=20, repetition_penalty=1.3, seed=5)
    generate(model, tok, prompts[:1], opts)
    generate(model, tok, prompts[:1], GenerationOptions(max_new_tokens=4))
    sampled, greedy = seen
    assert sampled["do_sample"] is True and sampled["temperature"] == 0.7 and sampled["top_p"] == 0.9
    assert sampled["top_k"] == 20 and sampled["repetition_penalty"] == 1.3 and sampled["use_cache"] is True
    assert greedy["do_sample"] is False and "temperature" not in greedy


def test_streamed_deltas_join_to_exactly_the_generated_text(model: Any, tok: Any, prompts: list[list[int]]) -> None:
    for opts in (GenerationOptions(max_new_tokens=24), GenerationOptions(max_new_tokens=24, temperature=1.0, seed=3)):
        [expected] = generate(model, tok, [prompts[2]], opts)
        s = stream(model, tok, prompts[2], opts)
        deltas = list(s)
        assert len(deltas) > 1  # the text arrived as it grew, not at once
        assert "".join(deltas) == expected.text
        assert s.generation == expected


def test_a_stop_string_never_leaks_into_the_stream_not_even_partly(model: Any, tok: Any,
                                                                   prompts: list[list[int]]) -> None:
    [full] = generate(model, tok, [prompts[3]], GenerationOptions(max_new_tokens=24))
    text = full.text
    for length in (2, 5):  # stop strings that may straddle several tokens
        start = next(i for i in range(len(text) // 2, len(text) - length) if text[i] != " "
                     and "\ufffd" not in text[i:i + length])
        stop = text[start:start + length]
        opts = GenerationOptions(max_new_tokens=24, stop=[stop])
        [expected] = generate(model, tok, [prompts[3]], opts)
        s = stream(model, tok, prompts[3], opts)
        joined = ""
        for delta in s:
            joined += delta
            assert expected.text.startswith(joined)  # nothing handed out is ever taken back
        assert joined == expected.text == text[: text.find(stop)].rstrip()
        assert s.generation is not None and s.generation.finish_reason == "stop"


def test_closing_a_stream_stops_the_generation(model: Any, tok: Any, prompts: list[list[int]]) -> None:
    s = stream(model, tok, prompts[0], GenerationOptions(max_new_tokens=200))
    next(s)
    s.close()
    assert not s._thread.is_alive()


def test_generate_is_usable_from_several_threads(model: Any, tok: Any, prompts: list[list[int]]) -> None:
    expected = [g.text for g in generate(model, tok, prompts, GenerationOptions(max_new_tokens=8), batch_size=1)]
    got: dict[int, str] = {}

    def work(i: int) -> None:
        [g] = generate(model, tok, [prompts[i]], GenerationOptions(max_new_tokens=8))
        got[i] = g.text

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(len(prompts))] == expected


def test_prompts_are_kept_within_the_models_context(model: Any, tok: Any) -> None:
    limit = context_length(model)
    assert limit == 256
    long_prompt = [5] * (limit - 3)
    [g] = generate(model, tok, [long_prompt], GenerationOptions(max_new_tokens=50))
    assert g.finish_reason == "length" and g.completion_tokens == 3  # what the context had room for
    with pytest.raises(ConfigError, match="no room for a reply"):
        generate(model, tok, [[5] * limit], GenerationOptions())
    with pytest.raises(ConfigError, match="empty"):
        generate(model, tok, [[]], GenerationOptions())


def test_options_are_validated_with_every_problem_named() -> None:
    with pytest.raises(ConfigError) as e:
        GenerationOptions(max_new_tokens=0, temperature=3.0, top_p=0.0, top_k=-1, repetition_penalty=0.0,
                          seed=-1, stop=["a", "b", "c", "d", "e"])
    for name in ("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed", "stop"):
        assert name in e.value.message
    with pytest.raises(ConfigError, match="empty"):
        GenerationOptions(stop=[""])
    with pytest.raises(ConfigError, match="temperature"):
        GenerationOptions(temperature=True)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="beam_width: not a generation option"):
        GenerationOptions.of(beam_width=2)
    assert GenerationOptions(stop="###").stop == ("###",)
    base = GenerationOptions(max_new_tokens=7, temperature=0.5)
    assert GenerationOptions.of(base, temperature=None, seed=3) == GenerationOptions(max_new_tokens=7,
                                                                                      temperature=0.5, seed=3)


def test_task_predict_feeds_generate_the_render_prompt_ids(model: Any, tok: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The same template on every path: the ids the model receives are render_prompt's, and the predictions carry
    the text, why it ended and the token counts."""
    received: list[list[int]] = []
    original = type(model).generate

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        received.extend(row[m.bool()].tolist() for row, m in zip(ids, mask, strict=True))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "generate", spy)
    task = get_task("generation")
    examples = [task.parse_input(q, i) for i, q in enumerate(QUESTIONS)]
    examples.append({"messages": [{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "Say hello."},
                                  {"role": "assistant", "content": "Hello there!"}]})
    preds = task.predict(model, tok, examples, [], max_length=64, batch_size=2, max_new_tokens=5, stop=["zz"])
    expected = [render_prompt(tok, ex["messages"]) for ex in examples[:-1]]
    expected.append(render_prompt(tok, examples[-1]["messages"][:-1]))  # the reference reply is not in the prompt
    assert sorted(received) == sorted(expected)
    for p, ids in zip(preds, expected, strict=True):
        assert p["prompt_tokens"] == len(ids) and p["finish_reason"] in ("stop", "length")
        assert 1 <= p["completion_tokens"] <= 5 and isinstance(p["text"], str)
    assert "tokens" in preds[-1] and "tokens" not in preds[0]  # the reference reply's teacher-forced statistics
    public = task.public_prediction(preds[-1])
    assert set(public) == {"text", "finish_reason", "prompt_tokens", "completion_tokens"}
    with pytest.raises(ConfigError, match="temperature"):
        task.predict(model, tok, examples[:1], [], max_length=64, temperature=9.0)
