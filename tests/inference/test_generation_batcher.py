"""The continuous-batching decode loop on a tiny in-process Llama: concurrent requests get exactly their
one-at-a-time replies (and ``generate``'s), requests that arrive together are prefilled in one pass (within the
prefill budget), a request joins a batch mid-decode, cancellation and deadlines end a sequence at the next step, a
full queue refuses, sampling with a seed draws what ``generate`` draws, and LoRA adapters decode from one base in
mixed batches."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuneforge.errors import ConfigError, ServiceUnavailableError
from tuneforge.inference.generation_batcher import BatcherLimits, GenerationBatcher
from tuneforge.tasks.generation.generate import GenerationOptions, generate
from tuneforge.tasks.generation.template import render_prompt

QUESTIONS = ["hello there", "what is the capital of france?", "tell me a story about a long river and a dragon",
             "hi", "a b c d e f g", "How do I reset my password?"]


@pytest.fixture(scope="module")
def tok(tiny_chat_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_chat_model))


@pytest.fixture(scope="module")
def model(tiny_chat_model: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(tiny_chat_model)).eval()


@pytest.fixture(scope="module")
def sharp_model(tiny_chat_model: Path):
    """The tiny model with its weights drawn 10x wider: at conftest's init its replies hardly depend on the prompt
    (a row decoded at wrong positions would still pass); these depend on every token and where it sits."""
    import torch
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(str(tiny_chat_model)).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.2, generator=g)
    return m


@pytest.fixture(scope="module")
def prompts(tok) -> list[list[int]]:
    return [render_prompt(tok, [{"role": "user", "content": q}]) for q in QUESTIONS]


@pytest.fixture
def batcher(model):
    b = GenerationBatcher(model, limits=BatcherLimits(max_batch=8))
    yield b
    b.close()
    b.join(10)


def wait_until(cond, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


@contextlib.contextmanager
def held(b: GenerationBatcher) -> Iterator[None]:
    """Keep the decode loop busy between two steps while the block runs: what it submits arrives together."""
    gate, entered = threading.Event(), threading.Event()

    def hold(m):
        entered.set()
        gate.wait(30)
        return m

    holder = threading.Thread(target=b.call, args=(hold,))
    holder.start()
    assert entered.wait(10)
    try:
        yield
    finally:
        gate.set()
        holder.join(10)


def test_concurrent_requests_get_their_one_at_a_time_greedy_replies(batcher, model, tok, prompts):
    opts = GenerationOptions(max_new_tokens=24)
    alone = [batcher.submit(p, opts, tokenizer=tok).result() for p in prompts]
    reference = [generate(model, tok, [p], opts)[0] for p in prompts]  # model.generate, one prompt at a time
    assert [g.token_ids for g in alone] == [r.token_ids for r in reference]
    assert [g.text for g in alone] == [r.text for r in reference]
    together = [batcher.submit(p, opts, tokenizer=tok) for p in prompts]
    results = [r.result() for r in together]
    assert batcher.widest > 1  # they did decode in one batch
    assert [(g.token_ids, g.text, g.finish_reason, g.prompt_tokens, g.completion_tokens) for g in results] == [
        (g.token_ids, g.text, g.finish_reason, g.prompt_tokens, g.completion_tokens) for g in alone]


def test_requests_that_arrive_together_are_prefilled_in_one_pass_with_their_alone_replies(sharp_model, tok,
                                                                                          prompts):
    b = GenerationBatcher(sharp_model, limits=BatcherLimits(max_batch=8))
    try:
        opts = GenerationOptions(max_new_tokens=20)
        jobs = [(p, opts) for p in prompts] + [(prompts[2], GenerationOptions(max_new_tokens=1))]  # one token
        alone = [b.submit(p, o, tokenizer=tok).result() for p, o in jobs]
        assert alone[:-1] == [generate(sharp_model, tok, [p], opts)[0] for p in prompts]
        assert len({len(p) for p in prompts}) == len(prompts)  # every row of the pass is padded differently
        assert len({tuple(g.token_ids) for g in alone[:-1]}) == len(prompts)  # and has a reply of its own
        assert {g.finish_reason for g in alone} == {"stop", "length"}
        passes = b.prefills
        with held(b):
            together = [b.submit(p, o, tokenizer=tok) for p, o in jobs]
        results = [r.result() for r in together]
        assert b.prefills == passes + 1 and b.widest_prefill == len(jobs)
        assert results == alone
        assert results[-1].completion_tokens == 1 and results[-1].token_ids == alone[2].token_ids[:1]
    finally:
        b.close()
        b.join(10)


def test_the_prefill_budget_splits_a_crowd_over_steps_in_arrival_order(sharp_model, tok, prompts):
    longest = max(len(p) for p in prompts)
    b = GenerationBatcher(sharp_model, limits=BatcherLimits(max_batch=8, prefill_tokens=2 * longest))
    try:
        opts = GenerationOptions(max_new_tokens=12)
        alone = [b.submit(p, opts, tokenizer=tok).result() for p in prompts]
        passes = b.prefills
        with held(b):
            together = [b.submit(p, opts, tokenizer=tok) for p in prompts]
        assert [r.result() for r in together] == alone
        assert b.prefills - passes >= 3 and b.widest_prefill >= 2  # at most 2 rows of the longest prompt a pass
        assert b.widest > 2  # the rows prefilled at different steps still decoded together
        firsts = [r.first_token_at for r in together]
        assert firsts == sorted(firsts)  # the oldest join first
    finally:
        b.close()
        b.join(10)


def test_a_request_joins_the_batch_while_another_decodes(batcher, tok, prompts):
    long, short = GenerationOptions(max_new_tokens=60), GenerationOptions(max_new_tokens=10)
    ref_long = batcher.submit(prompts[2], long, tokenizer=tok).result()
    ref_short = batcher.submit(prompts[0], short, tokenizer=tok).result()
    first = batcher.submit(prompts[2], long, tokenizer=tok)
    steps = batcher.steps
    wait_until(lambda: batcher.steps >= steps + 5, "the first request to decode a few steps")
    second = batcher.submit(prompts[0], short, tokenizer=tok)  # prompts of other lengths: padded caches
    got_short = second.result()
    assert batcher.active == 1  # the short one left the batch; the long one decodes on
    got_long = first.result()
    assert batcher.widest == 2
    assert got_short.token_ids == ref_short.token_ids and got_long.token_ids == ref_long.token_ids
    assert got_long.completion_tokens == 60 and got_long.finish_reason == "length"


def test_streamed_deltas_join_to_the_reply_and_stop_strings_do_not_leak(batcher, model, tok, prompts):
    opts = GenerationOptions(max_new_tokens=30)
    full = generate(model, tok, [prompts[1]], opts)[0]
    r = batcher.submit(prompts[1], opts, tokenizer=tok)
    deltas = list(r)
    assert len(deltas) > 1 and "".join(deltas) == r.generation.text == full.text
    stop = full.text[len(full.text) // 2: len(full.text) // 2 + 2]
    stopped = generate(model, tok, [prompts[1]], GenerationOptions(max_new_tokens=30, stop=(stop,)))[0]
    r = batcher.submit(prompts[1], GenerationOptions(max_new_tokens=30, stop=(stop,)), tokenizer=tok)
    assert "".join(r) == r.generation.text == stopped.text and stop not in r.generation.text
    assert r.generation.finish_reason == "stop"


def test_seeded_sampling_draws_what_generate_draws(batcher, model, tok, prompts):
    opts = GenerationOptions(max_new_tokens=20, temperature=0.9, top_p=0.9, top_k=50, repetition_penalty=1.2,
                             seed=11)
    reference = generate(model, tok, [prompts[3]], opts)[0]
    together = [batcher.submit(prompts[3], opts, tokenizer=tok),
                batcher.submit(prompts[0], GenerationOptions(max_new_tokens=20), tokenizer=tok)]
    assert together[0].result().token_ids == reference.token_ids
    other = batcher.submit(prompts[3], GenerationOptions.of(opts, seed=12), tokenizer=tok).result()
    assert other.token_ids != reference.token_ids


def test_cancelling_ends_a_sequence_at_the_next_step_and_the_others_go_on(batcher, tok, prompts):
    opts = GenerationOptions(max_new_tokens=120)
    ref = batcher.submit(prompts[4], GenerationOptions(max_new_tokens=30), tokenizer=tok).result()
    doomed = batcher.submit(prompts[2], opts, tokenizer=tok)
    kept = batcher.submit(prompts[4], GenerationOptions(max_new_tokens=30), tokenizer=tok)
    it = iter(doomed)
    first = next(it)  # it is decoding
    doomed.cancel()
    rest = list(it)
    assert doomed.generation.finish_reason == "cancelled" and doomed.generation.completion_tokens < 120
    assert first + "".join(rest) == doomed.generation.text  # what it got before it stopped
    assert kept.result().token_ids == ref.token_ids
    wait_until(lambda: batcher.active == 0, "the batch to empty")


def test_a_full_queue_refuses_and_a_request_past_its_deadline_fails(model, tok, prompts):
    b = GenerationBatcher(model, limits=BatcherLimits(max_batch=2, max_queue=2, timeout_s=0.2))
    gate, entered = threading.Event(), threading.Event()

    def hold(m):  # keeps the loop's thread busy between two steps
        entered.set()
        gate.wait(30)
        return m

    holder = threading.Thread(target=b.call, args=(hold,))
    holder.start()
    entered.wait(10)
    waiting = [b.submit(prompts[0], tokenizer=tok), b.submit(prompts[1], tokenizer=tok)]
    with pytest.raises(ServiceUnavailableError) as e:
        b.submit(prompts[2], tokenizer=tok)
    assert e.value.code == "server_overloaded"
    time.sleep(0.3)  # past the deadline of the waiting requests
    gate.set()
    holder.join(10)
    for r in waiting:
        with pytest.raises(ServiceUnavailableError) as e:
            r.result()
        assert e.value.code == "timeout"
    b.close()
    b.join(10)
    with pytest.raises(ServiceUnavailableError):
        b.submit(prompts[0], tokenizer=tok)  # closed: the model was unloaded


def test_prompts_that_leave_no_room_are_refused(batcher, tok):
    with pytest.raises(ConfigError, match="no room"):
        batcher.submit([5] * 256, tokenizer=tok)
    with pytest.raises(ConfigError, match="empty"):
        batcher.submit([], tokenizer=tok)


def test_the_metering_hook_sees_every_end_even_a_cancelled_one(batcher, tok, prompts):
    seen = []
    r = batcher.submit(prompts[2], GenerationOptions(max_new_tokens=100), tokenizer=tok, on_done=seen.append)
    next(iter(r))
    r.cancel()
    r.result()
    batcher.submit(prompts[0], GenerationOptions(max_new_tokens=5), tokenizer=tok, on_done=seen.append).result()
    assert [g.finish_reason for g in seen][-1] in ("length", "stop") and seen[0].finish_reason == "cancelled"
    assert seen[0].completion_tokens >= 1 and seen[0].prompt_tokens == len(prompts[2])


def test_lora_adapters_decode_from_one_base_in_mixed_batches(tiny_chat_model, tok, prompts):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    def load():
        return AutoModelForCausalLM.from_pretrained(str(tiny_chat_model)).eval()

    adapters = {}
    for i, name in enumerate(("a1", "a2")):
        torch.manual_seed(i)
        peft = get_peft_model(load(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False))
        folder = Path(tiny_chat_model).parent / f"adapter-{name}"
        peft.save_pretrained(str(folder))
        adapters[name] = folder
    shared = PeftModel.from_pretrained(load(), str(adapters["a1"]), adapter_name="a1")
    shared.load_adapter(str(adapters["a2"]), adapter_name="a2")
    b = GenerationBatcher(shared.eval(), limits=BatcherLimits(max_batch=16, prefill_tokens=1024))
    opts = GenerationOptions(max_new_tokens=16)
    jobs = [(p, a) for p in prompts[:3] for a in (None, "a1", "a2")]
    alone = [b.submit(p, opts, tokenizer=tok, adapter=a).result().token_ids for p, a in jobs]
    with held(b):  # one prefill pass with every adapter and the base
        together = [b.submit(p, opts, tokenizer=tok, adapter=a) for p, a in jobs]
    assert [r.result().token_ids for r in together] == alone
    assert b.widest_prefill == len(jobs)
    with held(b):  # a request whose prefill fails (no such adapter) fails alone; the others of its pass go on
        bad = b.submit(prompts[0], opts, tokenizer=tok, adapter="missing")
        good = [b.submit(p, opts, tokenizer=tok, adapter="a1") for p in prompts[:2]]
    with pytest.raises(ValueError, match="missing"):
        bad.result()
    assert [r.result().token_ids for r in good] == [alone[1], alone[4]]
    base = load()
    for (p, a), ids in zip(jobs, alone, strict=True):  # each equals its own model decoding alone
        own = base if a is None else PeftModel.from_pretrained(load(), str(adapters[a])).eval()
        assert generate(own, tok, [p], opts)[0].token_ids == ids
    assert alone[0] != alone[1] or alone[0] != alone[2]  # the adapters change the replies
    b.close()
