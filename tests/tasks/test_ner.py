import numpy as np

from tuneforge.tasks import get_task


def test_ner_labels_only_first_subword_and_decodes_char_spans(tiny_bert, ner_rows):
    from transformers import AutoTokenizer

    task = get_task("ner")
    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    labels = task.label_list(ner_rows, False)
    assert labels == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    ex = {"tokens": ["johnny", "lives", "in", "paris"], "tags": ["B-PER", "O", "O", "B-LOC"]}
    enc = task.encode([ex], tok, labels, max_length=64)
    feat, first = enc.features[0], enc.meta[0]["first"]
    assert len(first) == 4
    assigned = [i for i, v in enumerate(feat["labels"]) if v != -100]
    assert assigned == first  # sub-words after the first one are ignored by the loss
    assert len(tok.tokenize("johnny")) > 1
    # logits that say PER on johnny and LOC on paris decode to character spans of the joined text
    n = len(feat["input_ids"])
    logits = np.zeros((n, len(labels)))
    logits[:, 0] = 1
    logits[first[0], labels.index("B-PER")] = 5
    logits[first[3], labels.index("B-LOC")] = 5
    pred = task.decode([(logits,)], enc, [ex], labels)[0]
    assert [(e["type"], e["text"], e["start"], e["end"]) for e in pred["entities"]] == [
        ("PER", "johnny", 0, 6), ("LOC", "paris", 16, 21)]
    scores = task.score([pred], [ex], labels)
    assert scores["f1"] == 1.0 and set(scores["per_class"]) == {"PER", "LOC"}


def test_ner_truncated_words_are_predicted_O(tiny_bert):
    from transformers import AutoTokenizer

    task = get_task("ner")
    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    ex = {"tokens": ["good"] * 40 + ["paris"], "tags": ["O"] * 40 + ["B-LOC"]}
    labels = ["O", "B-LOC", "I-LOC"]
    enc = task.encode([ex], tok, labels, max_length=16)
    assert enc.truncated == 1
    n = len(enc.features[0]["input_ids"])
    pred = task.decode([(np.zeros((n, 3)),)], enc, [ex], labels)[0]
    assert len(pred["tags"]) == 41 and pred["tags"][-1] == "O"


def test_label_positions_skip_bare_sentencepiece_markers():
    from tuneforge.tasks.ner import label_positions

    # XLM-R on pre-split Chinese characters: each character is "▁" + the character
    tokens = ["<s>", "▁", "科", "▁", "技", "▁北京", "</s>"]
    word_ids = [None, 0, 0, 1, 1, 2, None]
    assert label_positions(word_ids, tokens) == [2, 4, 5]
    # WordPiece: the first sub-word carries the label
    assert label_positions([None, 0, 0, 1, None], ["[CLS]", "john", "##ny", "paris", "[SEP]"]) == [1, 3]
    # a word that produced no token is marked -1 and predicted O
    assert label_positions([None, 0, 2, None], ["<s>", "a", "b", "</s>"]) == [1, -1, 2]


def test_markers_between_chinese_characters_are_dropped_and_cutting_keeps_the_end_token():
    from tuneforge.tasks.ner.task import kept_positions

    words = ["科", "技", "Apple", "公", "司"]
    tokens = ["<s>", "▁", "科", "▁", "技", "▁Apple", "▁", "公", "▁", "司", "</s>"]
    word_ids = [None, 0, 0, 1, 1, 2, 3, 3, 4, 4, None]
    # the marker before the first character and the one after a Latin word stay (the sentence has a space there)
    assert kept_positions(word_ids, tokens, words, 64) == [0, 1, 2, 4, 5, 6, 7, 9, 10]
    assert kept_positions(word_ids, tokens, words, 4) == [0, 1, 2, 10]
    # WordPiece output is left alone
    assert kept_positions([None, 0, 0, None], ["[CLS]", "john", "##ny", "[SEP]"], ["johnny"], 64) == [0, 1, 2, 3]
