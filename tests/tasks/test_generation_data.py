"""Generation data: the six layouts normalize to one shape; bad input gives per-line errors with OpenAI's codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.errors import DataError, DataProblem
from tuneforge.tasks.generation.data import (
    CodedProblem,
    detect_format,
    normalize_row,
    parse_prompt,
    read_generation_data,
)


def chat_row(i: int) -> dict:
    return {"messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": f"Question {i}?"},
                         {"role": "assistant", "content": f"Answer {i}."}]}


def write(path: Path, rows: list, *, raw: bytes | None = None) -> Path:
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def problems_of(path: Path, **kw) -> list[DataProblem]:
    with pytest.raises(DataError) as e:
        read_generation_data(path, **kw)
    assert "Traceback" not in str(e.value)
    return e.value.problems


def test_a_valid_chat_file_is_normalized_with_weights(tmp_path):
    rows = [chat_row(i) for i in range(12)]
    rows[0]["messages"].append({"role": "user", "content": "More?"})
    rows[0]["messages"].append({"role": "assistant", "content": "No.", "weight": 0})
    data = read_generation_data(write(tmp_path / "chat.jsonl", rows), method="sft")
    assert data.kind == "sft" and len(data) == 12 and data.formats == ("chat",) and data.lines == list(range(1, 13))
    first = data.examples[0]["messages"]
    assert [m["role"] for m in first] == ["system", "user", "assistant", "user", "assistant"]
    assert [m.get("weight") for m in first] == [None, None, 1, None, 0]


@pytest.mark.parametrize(("row", "fmt", "messages"), [
    ({"prompt": "Q?", "completion": "A."}, "prompt_completion",
     [("user", "Q?", None), ("assistant", "A.", 1)]),
    ({"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"},
                 {"role": "user", "content": "Q?"}], "completion": [{"role": "assistant", "content": "A."}]},
     "prompt_completion", [("user", "Hi", None), ("assistant", "Hey", 0), ("user", "Q?", None),
                           ("assistant", "A.", 1)]),
    ({"instruction": "Translate.", "input": "chat", "output": "cat", "system": "Be exact."}, "alpaca",
     [("system", "Be exact.", None), ("user", "Translate.\n\nchat", None), ("assistant", "cat", 1)]),
    ({"instruction": "Say hi.", "input": "", "output": "Hi!"}, "alpaca",
     [("user", "Say hi.", None), ("assistant", "Hi!", 1)]),
    ({"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Q?"},
                        {"from": "gpt", "value": "A."}]}, "sharegpt",
     [("system", "S", None), ("user", "Q?", None), ("assistant", "A.", 1)]),
])
def test_sft_formats_normalize_to_messages(row, fmt, messages):
    got_fmt, ex = normalize_row(row)
    assert got_fmt == fmt == detect_format(row)
    assert [(m["role"], m["content"], m.get("weight")) for m in ex["messages"]] == messages


@pytest.mark.parametrize(("row", "fmt"), [
    ({"input": {"messages": [{"role": "user", "content": "Q?"}]},
      "preferred_output": [{"role": "assistant", "content": "Good."}],
      "non_preferred_output": [{"role": "assistant", "content": "Bad."}]}, "openai_preference"),
    ({"prompt": "Q?", "chosen": "Good.", "rejected": "Bad."}, "trl_preference"),
    ({"prompt": [{"role": "user", "content": "Q?"}], "chosen": [{"role": "assistant", "content": "Good."}],
      "rejected": [{"role": "assistant", "content": "Bad."}]}, "trl_preference"),
    ({"chosen": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "Good."}],
      "rejected": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "Bad."}]}, "trl_preference"),
])
def test_preference_formats_normalize_to_prompt_chosen_rejected(row, fmt):
    got_fmt, ex = normalize_row(row)
    assert got_fmt == fmt
    assert ex == {"prompt": [{"role": "user", "content": "Q?"}],
                  "chosen": [{"role": "assistant", "content": "Good."}],
                  "rejected": [{"role": "assistant", "content": "Bad."}]}


def test_the_shared_hh_harmless_and_alpaca_files_read(tmp_path):
    from tests.conftest import shared_datasets

    ds = shared_datasets()
    prefs = read_generation_data(ds / "hh_harmless" / "test.jsonl", method="dpo")
    assert prefs.kind == "preference" and prefs.formats == ("openai_preference",) and len(prefs) > 10
    alpaca = read_generation_data(ds / "alpaca" / "train_alpaca_format.json")
    assert alpaca.kind == "sft" and alpaca.formats == ("alpaca",)


def test_bad_chat_lines_name_line_field_and_openai_code(tmp_path):
    rows = [chat_row(i) for i in range(12)]
    rows[2]["messages"] = rows[2]["messages"][:2]                          # line 3: no assistant turn
    rows[4]["messages"][1]["role"] = "bot"                                  # line 5: unknown role
    rows[5]["messages"][2]["content"] = "  "                                # line 6: empty content
    rows[6]["messages"][1]["content"] = 42                                  # line 7: content not a string
    del rows[7]["messages"][1]["role"]                                      # line 8: missing role
    rows[8]["messages"][2]["thoughts"] = "hm"                               # line 9: unrecognized key
    rows[9]["messages"] = "hello"                                           # line 10: not a list
    rows[10]["messages"][2]["weight"] = 2                                   # line 11: bad weight
    rows[11]["messages"][2]["weight"] = 0                                   # line 12: nothing to learn
    found = {(p.line, p.field, p.code) for p in problems_of(write(tmp_path / "bad.jsonl", rows))}
    assert found == {
        (3, "messages", "example_missing_assistant_message"),
        (5, "messages[1].role", "unrecognized_role"),
        (6, "messages[2].content", "missing_content"),
        (7, "messages[1].content", "missing_content"),
        (8, "messages[1].role", "message_missing_key"),
        (9, "messages[2].thoughts", "message_unrecognized_key"),
        (10, "messages", "missing_messages_list"),
        (11, "messages[2].weight", "invalid_weight"),
        (12, "messages", "example_missing_assistant_message"),
    }
    text = str(DataError(problems_of(write(tmp_path / "bad.jsonl", rows))))
    assert "bad.jsonl:5 [messages[1].role]: unrecognized_role: role 'bot'" in text


def test_tools_and_tool_messages_are_refused_for_now(tmp_path):
    rows = [chat_row(i) for i in range(10)]
    rows[0]["tools"] = [{"type": "function", "function": {"name": "f"}}]
    rows[1]["messages"].append({"role": "tool", "content": "{}", "tool_call_id": "x"})
    problems = problems_of(write(tmp_path / "tools.jsonl", rows))
    assert {(p.line, p.code) for p in problems} == {(1, "unsupported_tools"), (2, "unrecognized_role"),
                                                  (2, "message_unrecognized_key")}
    assert all("not supported yet" in p.message for p in problems)


def test_invalid_json_and_non_objects_are_reported_per_line(tmp_path):
    rows: list = [chat_row(i) for i in range(12)]
    rows[1] = '{"messages": [}'
    rows[3] = "[1, 2]"
    rows[6] = '{"messages": '
    problems = problems_of(write(tmp_path / "broken.jsonl", rows))
    assert sorted(p.line for p in problems) == [2, 4, 7]
    assert next(p for p in problems if p.line == 4).code == "data_type"


def test_non_utf8_bytes_are_reported_on_every_bad_line(tmp_path):
    lines = [json.dumps(chat_row(i)).encode() for i in range(12)]
    lines[2] = lines[2].replace(b"Answer", b"R\xe9ponse")
    lines[8] = lines[8].replace(b"Question", b"\xff\xfeQuestion")
    problems = problems_of(write(tmp_path / "latin1.jsonl", [], raw=b"\n".join(lines) + b"\n"))
    assert [p.line for p in problems] == [3, 9]
    assert all("not valid UTF-8" in p.message for p in problems)


def test_fewer_than_ten_examples_is_refused_for_training_but_fine_for_evaluation(tmp_path):
    path = write(tmp_path / "small.jsonl", [chat_row(i) for i in range(9)])
    (p,) = problems_of(path)
    assert p.code == "insufficient_examples" and "at least 10" in p.message
    assert len(read_generation_data(path, min_examples=0)) == 9


def test_dpo_data_given_to_sft_and_the_reverse_say_which_method_fits(tmp_path):
    prefs = [{"prompt": f"Q{i}?", "chosen": "Good.", "rejected": "Bad."} for i in range(12)]
    (p,) = problems_of(write(tmp_path / "prefs.jsonl", prefs), method="lora")
    assert p.code == "wrong_method" and "--method dpo" in str(p)
    (p,) = problems_of(write(tmp_path / "chat.jsonl", [chat_row(i) for i in range(12)]), method="dpo")
    assert p.code == "wrong_method" and "supervised fine-tuning" in str(p) and "preference" in p.message
    assert read_generation_data(tmp_path / "prefs.jsonl", method="dpo").kind == "preference"


def test_a_file_mixing_chat_and_preference_examples_names_the_odd_line(tmp_path):
    rows = [chat_row(i) for i in range(12)]
    rows[5] = {"prompt": "Q?", "chosen": "Good.", "rejected": "Bad."}
    (p,) = problems_of(write(tmp_path / "mixed.jsonl", rows))
    assert p.line == 6 and p.code == "mixed_formats" and "line 1" in p.message


def test_an_unknown_layout_lists_the_keys_found(tmp_path):
    problems = normalize_row({"question": "Q?", "answer": "A."}, file="x.jsonl", line=4)
    assert isinstance(problems, list) and isinstance(problems[0], CodedProblem)
    assert problems[0].code == "missing_messages_list" and "'question'" in problems[0].message


@pytest.mark.parametrize(("row", "code"), [
    ({"input": {"messages": [{"role": "user", "content": "Q?"}]},
      "preferred_output": [{"role": "assistant", "content": "A"}, {"role": "assistant", "content": "B"}],
      "non_preferred_output": [{"role": "assistant", "content": "C"}]}, "data_type"),
    ({"input": {"messages": [{"role": "user", "content": "Q?"}]},
      "preferred_output": [{"role": "user", "content": "A"}],
      "non_preferred_output": [{"role": "assistant", "content": "C"}]}, "unrecognized_role"),
    ({"prompt": "Q?", "chosen": "", "rejected": "Bad."}, "missing_content"),
    ({"input": "Q?", "preferred_output": "A", "non_preferred_output": "B"}, "data_type"),
])
def test_bad_preference_rows(row, code):
    problems = normalize_row(row, file="p.jsonl", line=1)
    assert isinstance(problems, list) and code in {p.code for p in problems}


def test_parse_prompt_accepts_strings_and_message_lists():
    assert parse_prompt("How do I reset my password?") == [{"role": "user", "content": "How do I reset my password?"}]
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"}]
    assert parse_prompt({"messages": msgs}, system="Be brief.") == [{"role": "system", "content": "Be brief."}, *msgs]
    bad = parse_prompt([{"role": "bot", "content": "x"}], 3)
    assert isinstance(bad, DataProblem) and "item 3" in bad.message and "unrecognized_role" in bad.message
    assert isinstance(parse_prompt(""), DataProblem)


def test_a_broken_line_does_not_hide_the_problems_of_the_others(tmp_path):
    """Invalid JSON and non-UTF-8 lines are one coded problem each, and the lines that read are still checked."""
    lines = [json.dumps(chat_row(i)).encode() for i in range(12)]
    lines[1] = b'{"messages": [}'                                             # line 2: not JSON
    lines[3] = lines[3].replace(b"Answer", b"R\xe9ponse")                      # line 4: not UTF-8
    bad_role = chat_row(5)
    bad_role["messages"][1]["role"] = "bot"
    lines[5] = json.dumps(bad_role).encode()                                   # line 6: unknown role
    lines[7] = b"[1, 2]"                                                       # line 8: not an object
    problems = problems_of(write(tmp_path / "bad.jsonl", [], raw=b"\n".join(lines) + b"\n"))
    assert [(p.line, p.code) for p in problems] == [(2, "invalid_json"), (4, "invalid_encoding"),
                                                   (6, "unrecognized_role"), (8, "data_type")]
    assert all(isinstance(p, CodedProblem) and p.message.startswith(f"{p.code}: ") for p in problems)
    assert "line 2 is not valid JSON" in problems[0].message and "byte 0xe9" in problems[1].message


def test_a_json_document_saved_as_jsonl_is_still_one_problem(tmp_path):
    path = tmp_path / "doc.jsonl"
    path.write_text(json.dumps([chat_row(i) for i in range(12)], indent=2), encoding="utf-8")
    (p,) = problems_of(path)
    assert "one JSON document" in p.message


@pytest.mark.parametrize(("row", "task"), [
    (chat_row(0), "generation"),
    ({"conversations": [{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "A."}]}, "generation"),
    ({"prompt": "Q?", "chosen": "Good.", "rejected": "Bad."}, "generation"),
    ({"input": {"messages": []}, "preferred_output": [], "non_preferred_output": []}, "generation"),
    ({"instruction": "Say hi.", "input": "", "output": "Hi!"}, "generation"),
    ({"text": "a good film", "label": "positive"}, "classification"),
    ({"tokens": ["ann"], "tags": ["B-PER"]}, "ner"),
])
def test_the_task_of_a_file_is_told_by_its_columns(tmp_path, row, task):
    from tuneforge.tasks import guess_file_task

    assert guess_file_task(write(tmp_path / "d.jsonl", [row] * 3)) == task
    broken = write(tmp_path / "broken.jsonl", ['{"messages": [', row, "\xff"])  # still told by the lines that read
    assert guess_file_task(broken) == task
    assert guess_file_task(tmp_path / "missing.jsonl") == "classification"  # its reader says what is wrong
