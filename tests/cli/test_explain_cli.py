"""``tuneforge explain``: --json prints exactly the label, its score, the word attributions and the convergence
delta (NER: one entry per entity); the terminal output highlights the words with a legend; --html writes a page;
a label the model does not have and a bad --steps are refused in one line."""

from __future__ import annotations

import json

import pytest

from tests.evaluation.test_explain import make_run
from tuneforge.cli import main


@pytest.fixture(scope="module")
def run(tiny_bert, tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("cli-explain"), tiny_bert, "classification", ["negative", "positive"],
                    name="cls", seed=1)


def test_json_shape(run, capsys):
    assert main(["explain", str(run), "a gorgeous, witty movie.", "--json", "--steps", "20"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert set(obj) == {"label", "score", "attributions", "convergence_delta"}
    assert obj["label"] in ("negative", "positive") and 0 < obj["score"] < 1
    assert [a["token"] for a in obj["attributions"]] == ["a", "gorgeous", ",", "witty", "movie", "."]
    assert all(set(a) == {"token", "score"} for a in obj["attributions"])
    assert abs(obj["convergence_delta"]) < 0.1
    assert main(["explain", str(run), "a good movie", "--json", "--label", "negative"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] == "negative"


def test_terminal_and_html(run, tmp_path, capsys):
    page = tmp_path / "why.html"
    assert main(["explain", str(run), "a <b>good</b> movie", "--html", str(page)]) == 0
    shown = capsys.readouterr().out
    assert "legend" in shown and "convergence delta" in shown and "movie" in shown
    html = page.read_text(encoding="utf-8")
    assert ">&lt;</span>" in html and "<b>" not in html  # the text is escaped
    assert html.count('class="w"') == len(["a", "<", "b", ">", "good", "<", "/", "b", ">", "movie"])


def test_ner_json_has_one_entry_per_entity(tiny_bert, tmp_path, capsys):
    ner = make_run(tmp_path, tiny_bert, "ner", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], name="ner", seed=2)
    assert main(["predict", str(ner), "john lives in paris"]) == 0
    capsys.readouterr()
    assert main(["explain", str(ner), "john lives in paris", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert isinstance(entries, list) and entries
    for e in entries:
        assert {"label", "score", "attributions", "convergence_delta", "text", "start", "end"} == set(e)
        assert [a["token"] for a in e["attributions"]] == ["john", "lives", "in", "paris"]


def test_bad_label_and_steps(run, capsys):
    assert main(["explain", str(run), "a good movie", "--label", "meh"]) == 2
    assert "not a label of this model" in capsys.readouterr().err
    assert main(["explain", str(run), "a good movie", "--steps", "0"]) == 2
    assert main(["explain", str(run / "missing"), "a good movie"]) == 2
