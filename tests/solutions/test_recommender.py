"""The text recommender on a small synthetic catalogue (tiny in-process BERT): data validation, metrics, item-kNN,
two-tower fine-tuning, cold start from text, explanations, the bundle, and the CLI. The MovieLens check is slow."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from tests.conftest import shared_datasets, write_jsonl
from tuneforge.errors import ConfigError, DataError, NotFoundError, RunError
from tuneforge.solutions.recommender.collab import ItemKNN
from tuneforge.solutions.recommender.data import Interaction, Item, load_interactions, load_items
from tuneforge.solutions.recommender.metrics import rank_metrics
from tuneforge.solutions.recommender.model import Recommender, RecommenderConfig, train_recommender

# Two tastes: "fun" items and "boring" items. Users 0-9 like fun items, 10-19 like boring ones; each user also
# rated one item of the other kind low. Items f9 and b9 never appear in the interactions (cold start).
FUN = [f"good fun film {w}" for w in ("paris", "london", "john", "mary", "france", "city", "river", "love", "great",
                                       "capital")]
BORING = [f"awful boring movie {w}" for w in ("berlin", "germany", "acme", "corp", "order", "package", "account",
                                               "password", "hate", "refund")]


def catalogue() -> list[dict]:
    rows = [{"item_id": f"f{i}", "title": f"Fun {i}", "text": t, "genres": ["comedy"]} for i, t in enumerate(FUN)]
    rows += [{"item_id": f"b{i}", "title": f"Boring {i}", "text": t, "genres": "drama|slow"}
             for i, t in enumerate(BORING)]
    return rows


def events() -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for u in range(20):
        mine, other = ("f", "b") if u < 10 else ("b", "f")
        for i in sorted(rng.choice(9, size=6, replace=False)):  # items 0-8 only: 9 stays cold
            out.append({"user_id": u, "item_id": f"{mine}{i}", "rating": 5, "timestamp": 1000 + len(out)})
        out.append({"user_id": u, "item_id": f"{other}{int(rng.integers(9))}", "rating": 1,
                    "timestamp": 1000 + len(out)})
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("rec-data")
    items = write_jsonl(d / "items.jsonl", catalogue())
    inter = d / "interactions.csv"
    with inter.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["user_id", "item_id", "rating", "timestamp"])
        w.writeheader()
        w.writerows(events())
    return inter, items


CONFIG = dict(steps=30, batch_size=8, history_size=3, lr=1e-3, neighbors=10, candidates=8, max_length=16)


@pytest.fixture(scope="module")
def model(files, tiny_bert) -> Recommender:
    inter, items = files
    return train_recommender(load_interactions(inter), load_items(items),
                             RecommenderConfig(base_model=str(tiny_bert), **CONFIG))


# --- data ------------------------------------------------------------------------------------------------------

def test_interactions_are_validated_with_lines_and_fields(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("user_id,item_id,rating\n1,10,5\n,11,4\n2,12,lots\n")
    with pytest.raises(DataError) as e:
        load_interactions(p)
    msg = str(e.value)
    assert "bad.csv:3 [user_id]" in msg and "bad.csv:4 [rating]" in msg and "'lots'" in msg
    assert len(e.value.problems) == 2

    q = tmp_path / "cols.csv"
    q.write_text("uid,iid\n1,2\n")
    with pytest.raises(DataError, match="no column 'user_id'"):
        load_interactions(q)


def test_items_need_unique_ids_and_text(tmp_path):
    p = write_jsonl(tmp_path / "items.jsonl", [{"item_id": 1, "text": "a film"}, {"item_id": "1", "text": "again"},
                                              {"item_id": 2, "text": "  "}, {"item_id": 3, "title": "Only a title"}])
    with pytest.raises(DataError) as e:
        load_items(p)
    msg = str(e.value)
    assert "item id '1' repeats (first on line 1)" in msg and "item '2' has no text" in msg
    ok = load_items(write_jsonl(tmp_path / "ok.jsonl", [{"item_id": 3, "title": "Only a title", "genres": "a|b"}]))
    assert ok == [Item("3", "Only a title", "Only a title", ("a", "b"))]


def test_training_refuses_items_missing_from_the_catalogue(tiny_bert):
    items = [Item("a", "good film", "A")]
    with pytest.raises(DataError, match="1 item id\\(s\\) have no row in the items file: zz"):
        train_recommender([Interaction("u", "a", 5.0), Interaction("u", "zz", 5.0)], items,
                          RecommenderConfig(base_model=str(tiny_bert), steps=0))


def test_config_reports_every_bad_field():
    with pytest.raises(ConfigError) as e:
        RecommenderConfig(steps=-1, batch_size=1, lr=0)
    assert {"steps", "batch_size", "lr"} <= {p.split(":")[0] for p in e.value.problems}


# --- metrics and collaborative signals --------------------------------------------------------------------------

def test_rank_metrics_by_hand():
    scores = np.array([[0.9, 0.8, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4.0]])
    positives = [np.array([1]), np.array([0]), np.array([])]
    m = rank_metrics(scores, positives, k=2)
    # user 0: hit at rank 2 -> DCG 1/log2(3); user 1: item 0 ranks last -> miss; user 2 has no positive
    assert m["users"] == 2
    assert m["HR@2"] == pytest.approx(0.5)
    assert m["NDCG@2"] == pytest.approx((1 / np.log2(3)) / 2)


def test_item_knn_is_cosine_over_users():
    x = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [1, 0, 1]], dtype=np.float32))
    knn = ItemKNN.fit(x, k=2)
    # items 0 and 1 share 2 users: cos = 2 / (sqrt(3) * sqrt(2))
    assert knn.neighbors[1, 0] == 0
    assert knn.sims[1, 0] == pytest.approx(2 / np.sqrt(6), rel=1e-5)
    assert knn.sims[2, 0] == pytest.approx(1 / np.sqrt(3), rel=1e-5)
    # a user who saw item 1 gets item 0 scored by sim(1 -> 0)
    s = knn.score(sp.csr_matrix(np.array([[0, 1, 0]], dtype=np.float32)))
    assert s[0, 0] == pytest.approx(2 / np.sqrt(6), rel=1e-5) and s[0, 2] == 0


# --- the model -----------------------------------------------------------------------------------------------

def test_fine_tuning_lowers_the_contrastive_loss(model):
    ft = model.info["fine_tune"]
    assert ft["steps"] == 30
    assert ft["last_loss"] < ft["first_loss"]
    assert model.info["cold_items"] == 2  # f9, b9


def test_recommend_excludes_seen_items_and_explains(model):
    recs = model.recommend("0", 5)
    assert len(recs) == 5
    seen = {model.items[i].item_id for i in model.seen[model.user_index["0"]].indices}
    assert not seen & {r.item_id for r in recs}
    liked = {model.items[i].title for i in model.liked[model.user_index["0"]].indices}
    for r in recs:
        assert r.because and {b.title for b in r.because} <= liked
        assert r.explanation.startswith("Because you liked ")
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)


def test_users_get_their_taste_and_cold_items_are_reached_by_text(model):
    for user, mine in (("0", "f"), ("15", "b")):
        recs = model.recommend(user, 3)
        assert all(r.item_id.startswith(mine) for r in recs), (user, [r.item_id for r in recs])
        # the cold item of the user's taste beats the other cold item on text alone
        text = model.recommend(user, model.n_items, mode="text")
        order = [r.item_id for r in text]
        cold_mine, cold_other = f"{mine}9", ("b9" if mine == "f" else "f9")
        assert order.index(cold_mine) < order.index(cold_other)


def test_new_events_change_the_recommendations(model):
    before = [r.item_id for r in model.recommend("0", 3)]
    after = model.recommend("0", 3, extra_events=[(before[0], 5.0)])
    assert before[0] not in {r.item_id for r in after}
    # a user unknown to training is served from posted events only
    fresh = model.recommend("newcomer", 3, extra_events=[("b1", 5.0), ("b2", None)])
    assert all(r.item_id.startswith("b") for r in fresh)
    assert {"Boring 1", "Boring 2"} >= {b.title for r in fresh for b in r.because}
    with pytest.raises(NotFoundError, match="nope"):
        model.recommend("0", 3, extra_events=[("nope", 5.0)])


def test_unknown_user_gets_popular_items(model):
    recs = model.recommend("stranger", 3)
    pop = np.argsort(-model.popularity, kind="stable")[:3]
    assert [r.item_id for r in recs] == [model.items[i].item_id for i in pop]
    assert all(r.explanation == "Popular with other users" and not r.because for r in recs)


def test_similar_items_share_the_taste_even_for_cold_items(model):
    for item, kind in (("f1", "f"), ("f9", "f"), ("b9", "b")):
        sims = model.similar(item, 3)
        assert item not in {s.item_id for s in sims}
        assert sum(s.item_id.startswith(kind) for s in sims) >= 2, (item, [s.item_id for s in sims])
    assert all(s.knn_similarity == 0 for s in model.similar("f9", 5))  # cold: text only
    with pytest.raises(NotFoundError):
        model.similar("zz")


def test_evaluate_and_cold_pool(model):
    test = [Interaction("0", "f9", 5.0), Interaction("0", "b9", 1.0), Interaction("12", "b9", 4.0)]
    res = model.evaluate(test, pool=["f9", "b9"], modes=("text",))
    assert res["text"]["users"] == 2
    assert res["text"]["HR@10"] == 1.0  # two cold items, both in the top 10
    warm = model.evaluate([Interaction("0", "f9", 5.0)], k=1, modes=("text", "popularity"))
    assert set(warm) == {"text", "popularity"} and warm["text"]["users"] == 1


def test_bundle_round_trip_and_no_silent_overwrite(model, tmp_path):
    out = model.save(tmp_path / "bundle")
    assert {p.name for p in out.iterdir()} == {"manifest.json", "encoder", "items.jsonl", "item_embeddings.npy",
                                               "neighbors.npz", "popularity.npy", "history.npz"}
    assert list((out / "encoder").glob("*.safetensors"))
    loaded = Recommender.load(out)
    assert [(r.item_id, round(r.score, 5)) for r in loaded.recommend("3", 5)] == \
        [(r.item_id, round(r.score, 5)) for r in model.recommend("3", 5)]
    assert loaded.blend == model.blend
    with pytest.raises(RunError, match="already exists"):
        model.save(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    # the saved encoder reproduces the stored item embeddings
    again = Recommender.load(out, with_encoder=True)
    assert again.tower is not None
    assert np.allclose(again.tower.embed([it.text for it in again.items]), again.embeddings, atol=1e-5)


def test_load_rejects_what_is_not_a_bundle(tmp_path):
    with pytest.raises(RunError, match="not a recommender bundle"):
        Recommender.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other/9"}))
    with pytest.raises(Exception, match="expected 'tuneforge-recommender/1'"):
        Recommender.load(tmp_path)


# --- CLI -----------------------------------------------------------------------------------------------------

def test_cli_train_recommend_similar_evaluate(files, tiny_bert, tmp_path):
    from tuneforge.solutions.recommender.cli import app

    inter, items = files
    runner = CliRunner()
    bundle = tmp_path / "b"
    r = runner.invoke(app, ["train", "--interactions", str(inter), "--items", str(items), "--output", str(bundle),
                            "--base-model", str(tiny_bert), "--steps", "3", "--batch-size", "4"],
                      env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "Saved" in r.output and (bundle / "manifest.json").exists()
    r = runner.invoke(app, ["recommend", str(bundle), "--user", "0", "-k", "3", "--json"])
    assert r.exit_code == 0, r.output
    recs = json.loads(r.output)
    assert len(recs) == 3 and all(x["explanation"] for x in recs)
    r = runner.invoke(app, ["similar", str(bundle), "--item", "f9", "-k", "2", "--json"])
    assert r.exit_code == 0 and len(json.loads(r.output)) == 2
    r = runner.invoke(app, ["evaluate", str(bundle), "--test", str(inter), "--json"])
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.output)) == {"hybrid", "text", "knn", "popularity"}


def test_cli_errors_are_messages_with_exit_code_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tuneforge.cli", "solution", "recommender", "recommend",
                           str(tmp_path), "--user", "1"], capture_output=True, text=True, timeout=300,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home()),
                               "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2
    assert "not a recommender bundle" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


# --- MovieLens (slow) ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_movielens_u1_hybrid_beats_popularity_and_text_reaches_cold_items():
    d = shared_datasets() / "movielens_100k"
    if not (d / "interactions_u1_base.csv").exists():
        pytest.skip(f"needs {d}/interactions_u1_base.csv")
    items = load_items(d / "items.jsonl")
    train = load_interactions(d / "interactions_u1_base.csv")
    test = load_interactions(d / "interactions_u1_test.csv")
    rng = np.random.default_rng(0)
    cold = set(rng.choice([it.item_id for it in items], size=168, replace=False).tolist())
    model = train_recommender([x for x in train if x.item not in cold], items,
                              RecommenderConfig(base_model="minilm", steps=20, batch_size=32))
    warm = model.evaluate(test, pool=[it.item_id for it in items if it.item_id not in cold])
    assert warm["hybrid"]["NDCG@10"] > warm["popularity"]["NDCG@10"]
    assert warm["knn"]["NDCG@10"] > warm["popularity"]["NDCG@10"]
    pool = sorted(cold)
    cold_res = model.evaluate(test, pool=pool, modes=("text", "hybrid"))
    index = {item: i for i, item in enumerate(pool)}
    positives: dict[str, list[int]] = {}
    for x in test:
        if x.item in index and x.rating is not None and x.rating >= 4:
            positives.setdefault(x.user, []).append(index[x.item])
    users = sorted(positives)
    chance = rank_metrics(np.random.default_rng(0).random((len(users), len(pool))),
                          [np.array(positives[u]) for u in users])
    assert cold_res["text"]["users"] == chance["users"] > 100
    assert cold_res["text"]["NDCG@10"] > chance["NDCG@10"]
    assert cold_res["hybrid"]["NDCG@10"] == pytest.approx(cold_res["text"]["NDCG@10"])  # cold: text decides
