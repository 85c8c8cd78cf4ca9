import numpy as np

from tuneforge.tasks import get_task


def test_qa_windows_map_answers_back_to_context(tiny_bert, qa_rows):
    from transformers import AutoTokenizer

    task = get_task("qa")
    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    long_ctx = " ".join(["the film was good ."] * 30) + " paris is the capital of france ."
    ex = {"id": "x", "question": "what is the capital of france?", "context": long_ctx,
          "answers": {"text": ["paris"], "answer_start": [long_ctx.index("paris")]}}
    enc = task.encode([ex], tok, task.label_list([ex], False), max_length=48, stride=16)
    assert len(enc.features) > 1 and enc.truncated == 1  # the context needs several windows
    inside = [f for f in enc.features if f["start_positions"] != 0]
    assert inside, "the answer must be labelled in at least one window"
    for f, m in zip(enc.features, enc.meta, strict=True):
        if f["start_positions"]:
            s, e = m["offsets"][f["start_positions"]][0], m["offsets"][f["end_positions"]][1]
            assert long_ctx[s:e] == "paris"
    # decoding: put the highest logits on the answer tokens of the window that holds it; pick that span
    outputs = []
    for f in enc.features:
        n = len(f["input_ids"])
        start, end = np.zeros(n), np.zeros(n)
        if f["start_positions"]:
            start[f["start_positions"]] = 10
            end[f["end_positions"]] = 10
        outputs.append((start, end))
    pred = task.decode(outputs, enc, [ex], [])[0]
    assert pred["answer"] == "paris" and long_ctx[pred["start"]:pred["end"]] == "paris"
    assert task.score([pred], [ex], [])["exact_match"] == 100.0


def test_qa_decode_never_returns_question_tokens(tiny_bert):
    from transformers import AutoTokenizer

    task = get_task("qa")
    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    ex = {"id": "x", "question": "who is john?", "context": "mary works at acme corp",
          "answers": {"text": [], "answer_start": []}}
    enc = task.encode([ex], tok, [], max_length=64, with_labels=False)
    n = len(enc.features[0]["input_ids"])
    start, end = np.zeros(n), np.zeros(n)
    start[1] = end[2] = 100.0  # question tokens: must be ignored
    start[-3] = end[-2] = 5.0  # "acme corp" region
    pred = task.decode([(start, end)], enc, [ex], [])[0]
    assert pred["answer"] in ex["context"] and "john" not in pred["answer"]
