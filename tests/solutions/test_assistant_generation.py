"""The assistant's generated-answer mode and the out-of-scope handover: the writer's prompt and citations, answers
written by a tiny chat model through the generation task's own path, the nothing-relevant path, the writer's
training data, the retrieval-only vs generated evaluation, and the intent model's reject option."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import write_jsonl
from tuneforge.errors import ConfigError
from tuneforge.solutions.assistant.answers import evaluate_answers, read_answer_rows
from tuneforge.solutions.assistant.assistant import (
    NOTHING_FOUND,
    Assistant,
    AssistantConfig,
    Session,
    build_bundle,
    set_writer,
)
from tuneforge.solutions.assistant.knowledge import load_knowledge
from tuneforge.solutions.assistant.scoring import evaluate_assistant
from tuneforge.solutions.assistant.writer import (
    NO_ANSWER,
    WRITER_SYSTEM,
    cite,
    parse_citations,
    says_no_answer,
    writer_messages,
)
from tuneforge.solutions.assistant.writer_data import writer_examples

KB = [
    {
        "id": "kb-cancel",
        "question": "how do i cancel my subscription",
        "intent": "cancel",
        "answer": "Open Settings, choose Plan and press Cancel.",
    },
    {
        "id": "kb-delivery",
        "question": "where is my order",
        "intent": "delivery",
        "answer": "Orders arrive within five days; track them under Orders.",
    },
    {
        "id": "kb-refund",
        "question": "i want my money back",
        "intent": "refund",
        "answer": "Refunds are paid to your card within ten days.",
    },
    {
        "id": "kb-cancel-2",
        "question": "stop my plan",
        "intent": "cancel",
        "answer": "Press Cancel under Settings, Plan.",
    },
]


def _passage_numbers(prompt: str) -> dict[int, str]:
    """The numbered passages of a writer prompt: number -> the passage's first line (its title)."""
    return {int(n): title for n, title in re.findall(r"^\[(\d+)\] (.*)$", prompt, flags=re.M)}


class KeywordWriter:
    """A writer that reads its prompt as the real one must: it cites the numbered passage whose title shares a
    word (of four letters or more) with the customer's message, or says there is no answer; it records the
    prompts it was given."""

    def __init__(self) -> None:
        self.prompts: list[list[dict[str, str]]] = []

    def write(self, conversations, options):
        out = []
        for conv in conversations:
            self.prompts.append(list(conv))
            user = conv[-1]["content"]
            question = _words(user.rsplit("Customer message:", 1)[1])
            hits = [n for n, title in _passage_numbers(user).items() if question & _words(title)]
            out.append(f"Here is what to do [{hits[0]}]. See also [9]." if hits else NO_ANSWER)
        return out


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", text.lower()) if len(w) > 3}


def _own_text(row: dict) -> str:
    """A KB row's passage text: retrieved first with similarity 1 by any encoder."""
    return f"{row['question']}\n{row['answer']}"


@pytest.fixture
def bundle(tmp_path, tiny_bert) -> Path:
    write_jsonl(tmp_path / "faq.jsonl", KB)
    cfg = AssistantConfig(encoder="tiny", threshold=0.0, answer_mode="generate", writer_passages=2)
    return build_bundle(
        tmp_path / "bundle",
        passages=load_knowledge([tmp_path / "faq.jsonl"]),
        config=cfg,
        resolve_encoder=lambda name: tiny_bert,
    )


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory) -> Path:
    """conftest's tiny chat model (a random 2-layer Llama, ChatML), with room for a writer prompt: its byte-level
    tokenizer of 400 tokens spends about one token per two characters, so a prompt with passages is ~400 tokens."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.tasks.test_generation_template import tiny_tokenizer

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=1024,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            bos_token_id=None,
        )
    )
    model.generation_config.eos_token_id = tok.eos_token_id
    dest = tmp_path_factory.mktemp("writer-chat-model")
    model.save_pretrained(str(dest), safe_serialization=True)
    tok.save_pretrained(str(dest))
    return dest


def _load(bundle: Path, tiny_bert: Path, **kw) -> Assistant:
    return Assistant.load(bundle, resolve_encoder=lambda name: tiny_bert, **kw)


# --- the prompt and the citations -----------------------------------------------------------------------------
def test_prompt_numbers_the_passages_and_citations_are_read_back():
    passages = load_knowledge_rows(KB[:2])
    msgs = writer_messages("  where is my parcel? ", passages, chars=30)
    assert msgs[0] == {"role": "system", "content": WRITER_SYSTEM}
    user = msgs[1]["content"]
    assert _passage_numbers(user) == {1: "how do i cancel my subscription", 2: "where is my order"}
    assert user.endswith("Customer message: where is my parcel?")
    assert "Open Settings, choose Plan and …" in user  # cut at 30 characters, at a word
    c = parse_citations("Do this [2]. Then that [1, 3][2] and [7].", 3)
    assert (c.numbers, c.invalid) == ([2, 1, 3], [7])
    assert parse_citations("no citations here, [a] [ ]", 3).numbers == []
    cited = cite("Open Settings. Then press Cancel.\n\n1. Go.", [2, 3])
    assert cited == "Open Settings [2][3]. Then press Cancel.\n\n1. Go."
    assert cite("No sentence end", [1]) == "No sentence end [1]"
    assert says_no_answer(NO_ANSWER) and says_no_answer(
        "Sorry, I couldn't find the answer to this in our help articles."
    )
    assert not says_no_answer("Orders arrive within five days [1].")


def load_knowledge_rows(rows):
    from tuneforge.solutions.assistant.knowledge import passages_from_rows

    return passages_from_rows(rows, "faq")


# --- generated answers --------------------------------------------------------------------------------------------
def test_generated_answer_cites_passages_by_id(bundle, tiny_bert):
    writer = KeywordWriter()
    a = _load(bundle, tiny_bert, writer=writer)
    r = a.answer(Session(), _own_text(KB[1]))
    assert (r.handover, r.reason) == (False, "generated")
    assert r.text == "Here is what to do [{}]. See also [9].".format(r.citations[0]["n"])
    cited = r.citations[0]
    assert (cited["id"], cited["intent"]) == ("kb-delivery", "delivery")
    shown = _passage_numbers(writer.prompts[0][-1]["content"])
    assert len(shown) == 2 and shown[cited["n"]] == "where is my order"  # [n] is the n-th passage of the prompt
    assert [p["n"] for p in r.passages[:2]] == [1, 2] and r.passages[cited["n"] - 1]["id"] == "kb-delivery"
    assert len(r.citations) == 1  # [9] names no passage: not a citation


def test_nothing_relevant_is_said_and_handed_over_without_asking_the_writer(bundle, tiny_bert):
    writer = KeywordWriter()
    cfg = AssistantConfig(encoder="tiny", threshold=0.0, answer_mode="generate", passage_min_similarity=0.999)
    a = _load(bundle, tiny_bert, writer=writer, config=cfg)
    r = a.answer(Session(), "what colour is the sky on mars")
    assert (r.handover, r.reason, r.text) == (True, "nothing_relevant", NOTHING_FOUND)
    assert writer.prompts == [] and r.transcript is not None
    # the writer itself finding no answer in the passages is a handover too
    a = _load(bundle, tiny_bert, writer=writer)
    r = a.answer(Session(), "zebra quantum")  # no passage title shares a word: the writer answers NO_ANSWER
    assert (r.handover, r.reason) == (True, "nothing_relevant")
    assert len(writer.prompts) == 1


def test_an_uncited_answer_is_handed_over_unless_citations_are_optional(bundle, tiny_bert):
    class Uncited:
        def write(self, conversations, options):
            return ["Just do it." for _ in conversations]

    r = _load(bundle, tiny_bert, writer=Uncited()).answer(Session(), "where is my order")
    assert (r.handover, r.reason) == (True, "uncited")
    cfg = AssistantConfig(encoder="tiny", threshold=0.0, answer_mode="generate", require_citation=False)
    r = _load(bundle, tiny_bert, writer=Uncited(), config=cfg).answer(Session(), "where is my order")
    assert (r.handover, r.reason, r.text, r.citations) == (False, "generated", "Just do it.", [])


def test_a_chat_model_writes_through_the_generation_task_path(bundle, tiny_bert, chat_model):
    """The bundle's writer (a base chat model folder here) generates what the generation task's predict path
    generates for the same prompt: the same chat template and decoding."""
    from tuneforge.inference import load_base_predictor
    from tuneforge.tasks.generation.generate import GenerationOptions

    set_writer(bundle, str(chat_model))
    info = json.loads((bundle / "assistant.json").read_text())
    assert info["config"]["writer"] == str(chat_model) and info["config"]["answer_mode"] == "generate"
    cfg = AssistantConfig.parse(
        {**info["config"], "writer_max_new_tokens": 12, "writer_passage_chars": 60, "require_citation": False}
    )
    a = _load(bundle, tiny_bert, config=cfg)
    r = a.answer(Session(), "where is my order")
    assert (r.handover, r.reason) == (False, "generated")
    shown = [a.passages[[p.id for p in a.passages].index(p["id"])] for p in r.passages[: cfg.writer_passages]]
    expected = load_base_predictor(chat_model, "generation").predict_examples(
        [{"messages": writer_messages("where is my order", shown, chars=60)}],
        generation=GenerationOptions(max_new_tokens=12),
    )[0]["text"]
    assert r.text == expected and r.text
    numbers = parse_citations(r.text, cfg.writer_passages).numbers
    assert [c["n"] for c in r.citations] == numbers  # whatever it wrote, the citations are read from it


def test_generate_mode_without_a_writer_is_refused(tmp_path, tiny_bert):
    write_jsonl(tmp_path / "faq.jsonl", KB)
    cfg = AssistantConfig(encoder="tiny", answer_mode="generate")
    build_bundle(
        tmp_path / "b",
        passages=load_knowledge([tmp_path / "faq.jsonl"]),
        config=cfg,
        resolve_encoder=lambda name: tiny_bert,
    )
    with pytest.raises(ConfigError, match="needs a writer"):
        _load(tmp_path / "b", tiny_bert)
    with pytest.raises(ConfigError, match="encoder"):
        set_writer(tmp_path / "b", "minilm")
    with pytest.raises(ConfigError, match="neither a generation run"):
        set_writer(tmp_path / "b", str(tmp_path / "nowhere"))


# --- evaluation: retrieval-only against generated -----------------------------------------------------------------
def test_evaluate_compares_retrieval_and_generated_answers(bundle, tiny_bert):
    a = _load(bundle, tiny_bert, writer=KeywordWriter())
    rows = [
        {"question": _own_text(KB[1]), "answer": "Orders arrive within five days.", "intent": "delivery"},
        {"question": _own_text(KB[2]), "answer": "Refunds are paid within ten days.", "passage_id": "kb-refund"},
        {"question": "zebra quantum", "answer": "Press Cancel under Settings.", "intent": "cancel"},
        {"question": "what is the weather on mars", "answer": None, "intent": None},
    ]
    m = evaluate_answers(a, rows, keep=2)
    ret, gen = m["modes"]["retrieval"], m["modes"]["generate"]
    assert m["questions"] == 4 and ret["answerable"] == gen["answerable"] == 3
    assert {
        "token_f1",
        "rougeL",
        "citation_accuracy",
        "cited",
        "said_nothing_relevant",
        "unanswerable",
        "unanswerable_said_nothing_relevant",
        "seconds_per_question",
    } <= set(gen)
    # the keyword writer cites the right passage for the first two and finds nothing for the third
    assert gen["citation_accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert gen["said_nothing_relevant"] == pytest.approx(1 / 3, abs=1e-4)
    assert gen["invalid_citations"] == pytest.approx(2 / 3, abs=1e-4)  # its "[9]"
    # retrieval-only always answers with (and "cites") its top passage: the passage's own text is the reference
    assert ret["cited"] == 1.0 and ret["said_nothing_relevant"] == 0.0
    assert 0 <= ret["token_f1"] <= 1 and 0 <= ret["rougeL"] <= 1
    assert [s["question"] for s in m["samples"]["generate"]] == [_own_text(KB[1]), _own_text(KB[2])]


def test_answer_rows_read_qa_and_chat_layouts_and_report_bad_lines(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"question": "q1", "answer": "a1", "intent": "x"}),
                json.dumps(
                    {
                        "messages": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}],
                        "passage_id": "p2",
                    }
                ),
                json.dumps({"question": "q3", "answer": None}),
            ]
        )
        + "\n"
    )
    rows = read_answer_rows(path)
    assert [(r["question"], r["answer"], r["intent"], r["passage_id"]) for r in rows] == [
        ("q1", "a1", "x", None),
        ("q2", "a2", None, "p2"),
        ("q3", None, None, None),
    ]
    from tuneforge.errors import DataError

    with pytest.raises(DataError) as e:
        read_answer_rows(path, require_answer=True)
    assert [p.line for p in e.value.problems] == [3]
    path.write_text('{"answer": "x"}\nnot json\n')
    with pytest.raises(DataError) as e:
        read_answer_rows(path)
    assert [p.line for p in e.value.problems] == [1, 2]


# --- the writer's training data, a trained tiny writer, and the CLI ------------------------------------------------
ROWS = [
    {"question": q, "answer": ans, "intent": i}
    for i, qs, ans in [
        ("cancel", ["cancel my plan", "please cancel it", "end my subscription"], "Go to Settings and press Cancel."),
        ("delivery", ["where is my parcel", "my order is late", "track my order"], "Orders take five days."),
        ("refund", ["money back please", "refund me now", "i want a refund"], "Refunds take ten days."),
    ]
    for q in qs
] + [{"question": "how do i cancel my subscription", "answer": KB[0]["answer"], "intent": "cancel"}]


def test_writer_examples_cite_the_passages_that_hold_the_answer(bundle, tiny_bert):
    a = _load(bundle, tiny_bert, writer=KeywordWriter())
    examples, summary = writer_examples(a, ROWS, no_answer_share=0.3, mixed_share=0.5, seed=1)
    assert summary["examples"] == len(examples) == summary["answer"] + summary["no_answer"]
    assert summary["no_answer"] >= 1 and summary["answer"] >= 1
    assert summary["own_passage_left_out"] >= 1  # the last row's question is a KB question: its passage is left out
    titles_by_intent = {k["question"]: k["intent"] for k in KB}
    for ex in examples:
        system, user_msg, reply_msg = ex["messages"]
        assert (system["content"], user_msg["role"], reply_msg["role"]) == (WRITER_SYSTEM, "user", "assistant")
        user, reply = user_msg["content"], reply_msg["content"]
        question = user.rsplit("Customer message: ", 1)[1]
        intent = next(r["intent"] for r in ROWS if r["question"] == question)
        shown = _passage_numbers(user)
        assert len(shown) == a.config.writer_passages
        gold = sorted(n for n, t in shown.items() if titles_by_intent[t] == intent)
        if reply == NO_ANSWER:
            assert gold == []
        else:
            assert gold and parse_citations(reply, len(shown)).numbers == gold
            assert re.sub(r" (\[\d+\])+", "", reply) == next(r["answer"] for r in ROWS if r["question"] == question)
        if question == "how do i cancel my subscription":
            assert "how do i cancel my subscription" not in shown.values()
    with pytest.raises(ConfigError):
        writer_examples(a, ROWS, no_answer_share=1.5)


def test_cli_writer_data_train_set_writer_ask_and_evaluate(tmp_path, tiny_bert, chat_model, capsys):
    """The recipe end to end on the tiny models: writer-data -> tuneforge train --task generation -> set-writer
    (the run is copied into the bundle) -> ask and evaluate with the bundle's writer."""
    from tuneforge.cli import main
    from tuneforge.solutions.assistant import cli

    write_jsonl(tmp_path / "faq.jsonl", KB)
    build_bundle(
        tmp_path / "b",
        passages=load_knowledge([tmp_path / "faq.jsonl"]),
        config=AssistantConfig(
            encoder=str(tiny_bert),
            threshold=0.0,
            writer_passage_chars=60,
            writer_max_new_tokens=8,
            require_citation=False,
        ),
    )
    write_jsonl(tmp_path / "qa.jsonl", ROWS * 2)
    runner = CliRunner()
    r = runner.invoke(
        cli.app,
        [
            "writer-data",
            str(tmp_path / "b"),
            "--data",
            str(tmp_path / "qa.jsonl"),
            "-o",
            str(tmp_path / "writer.jsonl"),
            "--no-answer-share",
            "0.2",
        ],
    )
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in (tmp_path / "writer.jsonl").read_text().splitlines()]
    assert len(lines) >= 10 and all(len(x["messages"]) == 3 for x in lines)
    assert "tuneforge train --task generation" in r.output

    run = tmp_path / "writer-run"
    assert (
        main(
            [
                "train",
                "--task",
                "generation",
                "--data",
                str(tmp_path / "writer.jsonl"),
                "--base-model",
                str(chat_model),
                "--output",
                str(run),
                "--epochs",
                "1",
                "--batch-size",
                "4",
                "--max-length",
                "1024",
                "--precision",
                "fp32",
            ]
        )
        == 0
    )
    capsys.readouterr()
    r = runner.invoke(cli.app, ["set-writer", str(tmp_path / "b"), str(run)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "b" / "writer" / "tuneforge.json").is_file()
    assert not (tmp_path / "b" / "writer" / "checkpoints").exists()
    cfg = json.loads((tmp_path / "b" / "assistant.json").read_text())["config"]
    assert (cfg["answer_mode"], cfg["writer"]) == ("generate", None)

    r = runner.invoke(cli.app, ["ask", str(tmp_path / "b"), "--json", "where is my order"])
    assert r.exit_code == 0, r.output
    reply = json.loads(r.output)
    assert reply["reason"] == "generated" and isinstance(reply["citations"], list)

    write_jsonl(tmp_path / "test.jsonl", ROWS[:4] + [{"question": "weather on mars", "answer": None}])
    r = runner.invoke(
        cli.app,
        [
            "evaluate",
            str(tmp_path / "b"),
            "--answers",
            str(tmp_path / "test.jsonl"),
            "--writer",
            str(chat_model),
            "-o",
            str(tmp_path / "m.json"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)["answers"]
    assert list(m["modes"]) == ["retrieval", "generate", f"generate:{chat_model}"]
    for mode in m["modes"].values():
        assert {"token_f1", "rougeL", "citation_accuracy", "cited", "unanswerable_said_nothing_relevant"} <= set(mode)
        assert mode["answerable"] == 4 and mode["unanswerable"] == 1
    assert "samples" in json.loads((tmp_path / "m.json").read_text())["answers"]
    r = runner.invoke(cli.app, ["evaluate", str(tmp_path / "b"), "--answers", str(tmp_path / "test.jsonl")])
    assert r.exit_code == 0, r.output
    assert "citation_accuracy" in r.output and "retrieval" in r.output


# --- the intent model's reject option -----------------------------------------------------------------------------
class RejectingPredictor:
    """An intent model with a reject option (the contract of classification runs trained with ``--reject``): its
    prediction dicts carry ``rejected``; a rejected one has the out-of-scope label and the best known intent."""

    labels = ["cancel", "delivery", "refund"]

    def predict(self, texts):
        out = []
        for t in texts:
            if "cancel" in t:
                out.append({"label": "cancel", "score": 0.93, "rejected": False})
            elif "order" in t:
                out.append({"label": "delivery", "score": 0.88, "rejected": False})
            else:
                out.append({"label": "oos", "score": 0.41, "rejected": True, "best_label": "refund"})
        return out


def test_a_rejected_intent_is_handed_over_as_out_of_scope(tmp_path, tiny_bert):
    write_jsonl(tmp_path / "faq.jsonl", KB)
    build_bundle(
        tmp_path / "b",
        passages=load_knowledge([tmp_path / "faq.jsonl"]),
        config=AssistantConfig(encoder="tiny", threshold=0.3),
        resolve_encoder=lambda name: tiny_bert,
    )
    a = _load(tmp_path / "b", tiny_bert, intent_model=RejectingPredictor())
    s = Session()
    r = a.answer(s, "I want to cancel my plan")
    assert (r.handover, r.intent, r.best_intent) == (False, "cancel", None)
    r = a.answer(s, "can you recommend a good pizza place around here")  # above the threshold, but rejected
    assert (r.handover, r.reason, r.intent, r.best_intent) == (True, "out_of_scope", "oos", "refund")
    assert r.confidence == pytest.approx(0.41) and s.turns[-1]["best_intent"] == "refund"
    m = evaluate_assistant(
        a,
        [
            {"text": "cancel it", "label": "cancel"},
            {"text": "where is my order", "label": "delivery"},
            {"text": "pizza places", "label": "food"},
        ],
    )
    assert (m["handover_recall"], m["handover_precision"], m["in_scope_handover_rate"]) == (1.0, 1.0, 0.0)
    np.testing.assert_allclose(m["intent_accuracy"], 1.0)
