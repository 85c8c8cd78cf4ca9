"""PII masking (tuneforge.data.pii, Presidio's pattern recognizers plus our China mobile and resident ID ones): each
type is found and masked in English and Chinese text, look-alikes (order numbers, dates, amounts, short digit runs,
numbers failing their checksum) are left alone, counts are per type, NER tokens and QA answers stay aligned, and
names come from a name finder when one is given; ``data check`` warns and ``data clean --mask-pii`` masks."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_jsonl
from tuneforge.data.dataset import Dataset
from tuneforge.data.pii import MASKS, PiiDetector, cn_resident_id_valid, mask_dataset, mask_text, scan_dataset


@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    return PiiDetector()


def _masked(detector: PiiDetector, text: str) -> str:
    return mask_text(text, detector.find(text))[0]


FOUND = [
    ("write to jane.doe@example.com about the refund", "email", "write to <EMAIL> about the refund"),
    ("call me on +1 415 555 0137 tomorrow", "phone", "call me on <PHONE> tomorrow"),
    ("call 020 7946 0958 in London", "phone", "call <PHONE> in London"),
    ("call 4155550137 or write", "phone", "call <PHONE> or write"),
    ("card 4111 1111 1111 1111 was charged twice", "credit_card", "card <CREDIT_CARD> was charged twice"),
    ("pay to GB82 WEST 1234 5698 7654 32 today", "iban", "pay to <IBAN> today"),
    ("pay to DE89370400440532013000 today", "iban", "pay to <IBAN> today"),
    ("server 192.168.1.20 is down", "ip", "server <IP> is down"),
    ("my address is 2001:db8::1 now", "ip", "my address is <IP> now"),
    # Chinese: no spaces around the number
    ("我的手机号是13812345678，请回电", "phone", "我的手机号是<PHONE>，请回电"),
    ("请拨打 +86 138 1234 5678 联系我", "phone", "请拨打 <PHONE> 联系我"),
    ("身份证号11010519491231002X已提交", "cn_id", "身份证号<CN_ID>已提交"),
    ("卡号4111111111111111已扣款", "credit_card", "卡号<CREDIT_CARD>已扣款"),
    ("邮箱jane@example.cn请查收", "email", "邮箱<EMAIL>请查收"),
]


@pytest.mark.parametrize(("text", "kind", "masked"), FOUND, ids=[f"{k}-{i}" for i, (_, k, _) in enumerate(FOUND)])
def test_each_type_is_found_and_masked(detector, text, kind, masked):
    spans = detector.find(text)
    assert [s.kind for s in spans] == [kind]
    assert _masked(detector, text) == masked


LOOK_ALIKES = [
    "order 2024-0815 shipped in 3 boxes",
    "invoice 2024-0815-0001 and reference 20240815-001",
    "delivered on 2024-08-15 at 10:30, 2024/08/15, 12:30:45",
    "2024年8月15日 下午3点 共 3 件",
    "costs $1,299.99 or ¥12,800 for 12345678 units",
    "qty 1000000 units at 19.99, room 1201, floor 12, zip 94103",
    "订单号 2024081512345 已发货",
    "温度 36.5 度，体重 70 公斤",
    "version 1.2.3 released in the 1990s",
    "card 4111 1111 1111 1112 fails the Luhn check",
    "ID 110105194912310021 fails its checksum",
    "ID 110105194913310028 has no such birth date",
    "IBAN GB82WEST12345698765433 fails its checksum",
    "ISBN 978-3-16-148410-0 and order #100234567",
    "std::vector<int> holds 1700000000 seconds",
    "1699元能拥有本本和包，4799 买的",  # a German plan allows 4-digit numbers
    "hexun.com/27697932_d.html and invoice 02840189",  # 8 digits: a Hong Kong or German number, or an id
    "订单号： 1450990450能帮我查查吗",  # a valid US number by its digits, but an order number
    "order no. 4155550137 and ticket #4155550138",
]


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alikes_are_left_alone(detector, text):
    assert detector.find(text) == []
    assert _masked(detector, text) == text


def test_resident_id_checksum_and_birth_date():
    assert cn_resident_id_valid("11010519491231002X") and cn_resident_id_valid("11010519491231002x")
    assert not cn_resident_id_valid("110105194912310021")  # wrong check character
    assert not cn_resident_id_valid("110105194902300028")  # 30 February
    assert not cn_resident_id_valid("1101051949123100")  # too short


def _dataset(task: str, examples: list[dict]) -> Dataset:
    return Dataset(task=task, examples=examples, lines=list(range(1, len(examples) + 1)), labels=[], path="x.jsonl",
                   format="jsonl", fingerprint="sha256:0")


def test_mask_dataset_counts_per_type_and_keeps_labels(detector):
    ds = _dataset("classification", [
        {"text": "mail jane.doe@example.com or bob@example.org", "text_pair": None, "label": "a"},
        {"text": "call +1 415 555 0137", "text_pair": "or 13812345678", "label": "b"},
        {"text": "order 2024-0815 shipped in 3 boxes", "text_pair": None, "label": "jane@example.com"},
    ])
    masked, report = mask_dataset(ds, detector)
    assert dict(report.counts) == {"email": 2, "phone": 2}
    assert report.examples == 2 and report.lines == {"email": [1], "phone": [2]}
    assert masked.examples[0]["text"] == "mail <EMAIL> or <EMAIL>"
    assert masked.examples[1]["text_pair"] == "or <PHONE>"
    assert masked.examples[2] == ds.examples[2]  # nothing in it; a label is never masked
    assert ds.examples[0]["text"].startswith("mail jane")  # the input is not modified
    assert scan_dataset(ds, detector).counts == report.counts


def test_ner_tokens_keep_their_tags_and_qa_answers_follow_the_context(detector):
    ner = _dataset("ner", [{"tokens": ["mail", "jane@example.com", "or", "+1", "415", "555", "0137", "paris"],
                            "tags": ["O", "O", "O", "O", "O", "O", "O", "B-LOC"]}])
    masked, report = mask_dataset(ner, detector)
    ex = masked.examples[0]
    assert ex["tokens"] == ["mail", "<EMAIL>", "or", "<PHONE>", "<PHONE>", "<PHONE>", "<PHONE>", "paris"]
    assert len(ex["tags"]) == len(ex["tokens"]) and dict(report.counts) == {"email": 1, "phone": 1}
    context = "write to jane@example.com; the capital of france is paris."
    qa = _dataset("qa", [{"id": "1", "title": None, "question": "what is the capital?", "context": context,
                          "answers": {"text": ["paris", "jane@example.com"],
                                      "answer_start": [context.index("paris"), context.index("jane")]}}])
    ex = mask_dataset(qa, detector)[0].examples[0]
    answers = ex["answers"]
    assert [ex["context"][s:s + len(t)] for s, t in zip(answers["answer_start"], answers["text"], strict=True)] \
        == ["paris", "<EMAIL>"] == answers["text"]


def test_names_come_from_the_name_finder():
    def names(texts):  # a stand-in for an NER run's PER entities
        return [[(t.index("Jane Doe"), t.index("Jane Doe") + 8)] if "Jane Doe" in t else [] for t in texts]

    detector = PiiDetector(names=names)
    text = "Jane Doe wrote from jane.doe@example.com"
    assert _masked(detector, text) == "<PERSON> wrote from <EMAIL>"
    assert [s.kind for s in detector.find("张三的电话是13812345678")] == ["phone"]
    assert set(MASKS) >= {"person", "cn_id"}


def test_data_check_warns_and_clean_masks_with_counts(tmp_path, capsys):
    from tuneforge.cli import main

    rows = [{"text": "write to jane.doe@example.com about the refund", "label": "a"},
            {"text": "call me on +1 415 555 0137 tomorrow", "label": "a"},
            {"text": "我的手机号是13812345678，请回电", "label": "b"},
            {"text": "card 4111 1111 1111 1111 was charged twice", "label": "a"},
            {"text": "身份证号11010519491231002X已提交", "label": "b"},
            {"text": "order 2024-0815 shipped in 3 boxes", "label": "b"}]
    data = write_jsonl(tmp_path / "pii.jsonl", rows)
    assert main(["data", "check", str(data)]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "personal data in 5 of 6 examples" in err and "2 phone" in err and "1 cn_id" in err
    assert main(["data", "check", str(data), "--no-pii-scan"]) == 0
    assert "personal data" not in capsys.readouterr().err
    clean = write_jsonl(tmp_path / "clean.jsonl", [rows[-1], {"text": "delivered on 2024-08-15", "label": "a"}])
    assert main(["data", "check", str(clean)]) == 0
    assert "personal data" not in capsys.readouterr().err

    masked = tmp_path / "masked.jsonl"
    assert main(["data", "clean", str(data), "--mask-pii", "-o", str(masked)]) == 0
    shown = capsys.readouterr().out
    assert "<CREDIT_CARD>" in shown and "cn_id" in shown
    texts = [json.loads(line)["text"] for line in masked.read_text(encoding="utf-8").splitlines()]
    assert texts == ["write to <EMAIL> about the refund", "call me on <PHONE> tomorrow", "我的手机号是<PHONE>,请回电",
                     "card <CREDIT_CARD> was charged twice", "身份证号<CN_ID>已提交",
                     "order 2024-0815 shipped in 3 boxes"]
    assert main(["data", "clean", str(data), "--pii-ner", str(tmp_path), "-o", str(masked)]) == 2
    assert "--mask-pii" in capsys.readouterr().err


class _FakeNer:
    """Stands in for a loaded NER run: PER and LOC entities found by name lists."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels

    def predict(self, texts: list[str]) -> list[dict]:
        found = []
        for t in texts:
            ents = [{"type": typ, "start": t.index(w), "end": t.index(w) + len(w), "text": w}
                    for w, typ in (("Jane Doe", "PER"), ("张三", "PER"), ("Paris", "LOC")) if w in t]
            found.append({"entities": ents})
        return found


def test_pii_ner_masks_the_person_entities_of_an_ner_run(tmp_path, capsys, monkeypatch):
    import tuneforge.inference.predictor as predictor
    from tuneforge.cli import main

    data = write_jsonl(tmp_path / "names.jsonl", [{"text": "Jane Doe moved to Paris", "label": "a"},
                                                  {"text": "张三的电话是13812345678", "label": "b"}])
    masked = tmp_path / "masked.jsonl"
    monkeypatch.setattr(predictor, "load_predictor", lambda run: _FakeNer(["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]))
    assert main(["data", "clean", str(data), "--mask-pii", "--pii-ner", str(tmp_path), "-o", str(masked)]) == 0
    assert "person" in capsys.readouterr().out
    texts = [json.loads(line)["text"] for line in masked.read_text(encoding="utf-8").splitlines()]
    assert texts == ["<PERSON> moved to Paris", "<PERSON>的电话是<PHONE>"]
    monkeypatch.setattr(predictor, "load_predictor", lambda run: _FakeNer(["negative", "positive"]))
    assert main(["data", "clean", str(data), "--mask-pii", "--pii-ner", str(tmp_path), "-o", str(masked)]) == 2
    assert "no person entities" in " ".join(capsys.readouterr().err.split())


def test_a_long_text_is_analysed_in_windows_without_cutting_a_finding(detector):
    head = "word " * 818  # the e-mail straddles the first window's end (4,096 characters)
    text = head + "jane.doe@example.com and 4111 1111 1111 1111 " + "more words " * 800 + "call 13812345678"
    spans = detector.find(text)
    assert [(s.kind, text[s.start:s.end]) for s in spans] == [
        ("email", "jane.doe@example.com"), ("credit_card", "4111 1111 1111 1111"), ("phone", "13812345678")]
    assert spans[0].start < 4096 < spans[0].end
