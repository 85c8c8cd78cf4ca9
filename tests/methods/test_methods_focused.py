"""Focused behaviour of the methods and training options on the tiny in-process BERT."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from rich.console import Console

from tests.conftest import write_jsonl
from tuneforge.training import make_config, train

QUIET = Console(file=open("/dev/null", "w"))  # noqa: SIM115


def _cfg(tmp_path, tiny_bert, rows, name, **extra):
    data = write_jsonl(tmp_path / f"{name}-train.jsonl", rows)
    return make_config({"task": "classification", "data": str(data), "eval_data": str(data),
                        "base_model": str(tiny_bert), "output": str(tmp_path / name), "epochs": 1, "batch_size": 4,
                        "learning_rate": 1e-3, "precision": "fp32", **extra})


def _tiny_cls(tiny_bert):
    from tuneforge.tasks import get_task

    return get_task("classification").build_model(tiny_bert, ["neg", "pos"], multi_label=False)


def _batch(tiny_bert):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    return tok(["a good movie", "very bad film indeed"], padding=True, return_tensors="pt")


def test_bottleneck_adapters_start_as_identity_and_only_they_train(tiny_bert):
    from tuneforge.methods import get_method

    model = _tiny_cls(tiny_bert).eval()
    batch = _batch(tiny_bert)
    before = model(**batch).logits
    cfg = make_config({"task": "classification", "data": "d", "output": "o", "method": "adapter", "adapter_size": 8})
    model = get_method("adapter").prepare(model, cfg, None).eval()
    assert torch.allclose(model(**batch).logits, before, atol=1e-6)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any(".adapter." in n for n in trainable) and any(n.startswith("classifier") for n in trainable)
    assert not any("attention.self.query" in n for n in trainable)
    assert len([n for n in trainable if n.endswith("adapter.down.weight")]) == 4  # 2 layers x (attention, ffn)


def test_lora_merge_gives_the_unmerged_outputs(tmp_path, tiny_bert, cls_rows):
    from tuneforge.inference import load_predictor
    from tuneforge.inference.export import export_merged

    result = train(_cfg(tmp_path, tiny_bert, cls_rows, "lora", method="lora", lora_r=4), console=QUIET)
    assert (result.output / "adapter_model.safetensors").exists() and not (result.output / "model.safetensors").exists()
    texts = ["a good film", "boring and bad"]
    unmerged = load_predictor(result.output).predict(texts)
    export_merged(result.output, tmp_path / "merged")
    assert json.loads((tmp_path / "merged" / "tuneforge.json").read_text())["method"] == "full"
    merged = load_predictor(tmp_path / "merged").predict(texts)
    for a, b in zip(unmerged, merged, strict=True):
        assert a["label"] == b["label"] and abs(a["score"] - b["score"]) < 1e-4


def test_bottleneck_adapters_refuse_to_merge():
    from tuneforge.errors import ConfigError
    from tuneforge.methods import get_method

    with pytest.raises(ConfigError, match="cannot be merged"):
        get_method("adapter").merge(None)


def test_fgm_perturbs_embedding_output_and_leaves_weights_unchanged(tiny_bert):
    from tuneforge.training.adversarial import EmbeddingAdversary

    model = _tiny_cls(tiny_bert).train()
    model.get_input_embeddings().weight.requires_grad_(False)
    batch = {**_batch(tiny_bert), "labels": torch.tensor([1, 0])}
    weight = model.get_input_embeddings().weight.clone()
    adv = EmbeddingAdversary(model, "fgm", epsilon=1.0)
    seen = []
    probe = model.get_input_embeddings().register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    adv.begin()
    model(**batch).loss.backward()
    params_grad = model.classifier.weight.grad.clone()
    adv_loss = adv.attack(lambda: model(**batch).loss)
    probe.remove()
    adv.remove()
    assert adv_loss is not None
    assert not torch.equal(model.classifier.weight.grad, params_grad)  # the adversarial pass added gradients
    # the probe runs after the adversary's hook: it saw the clean output, then the one perturbed by epsilon
    assert len(seen) == 2
    assert torch.allclose((seen[1] - seen[0]).flatten(1).norm(dim=1), torch.tensor([1.0, 1.0]), atol=1e-4)
    assert torch.equal(model.get_input_embeddings().weight, weight)  # the weights were never modified
    model.eval()
    out1 = model(**batch).logits
    assert torch.allclose(out1, model(**batch).logits)  # after the attack, plain forwards are unperturbed


def test_pgd_perturbation_stays_in_the_epsilon_ball(tiny_bert):
    from tuneforge.training.adversarial import EmbeddingAdversary

    model = _tiny_cls(tiny_bert).train()
    batch = {**_batch(tiny_bert), "labels": torch.tensor([1, 0])}
    adv = EmbeddingAdversary(model, "pgd", epsilon=0.5, steps=3)
    norms = []
    orig = adv._hook

    def spy(module, inputs, out):
        if adv.delta is not None:
            norms.append(float(adv.delta.detach().flatten(1).norm(dim=1).max()))
        return orig(module, inputs, out)

    adv.handle.remove()
    adv.handle = model.get_input_embeddings().register_forward_hook(spy)
    adv.begin()
    model(**batch).loss.backward()
    adv.attack(lambda: model(**batch).loss)
    assert len(norms) == 3 and max(norms) <= 0.5 + 1e-5 and min(norms) > 0


def test_distillation_loss_follows_the_teacher():
    from tuneforge.training.distill import distillation_loss

    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]], requires_grad=True)
    teacher_a = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    teacher_b = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
    unlabelled = torch.tensor([-100, -100])
    la = distillation_loss(logits, unlabelled, teacher_a, alpha=0.5, temperature=1.0)
    lb = distillation_loss(logits, unlabelled, teacher_b, alpha=0.5, temperature=1.0)
    assert torch.isfinite(la) and la < lb  # logits agree with teacher_a on row 0
    matching = torch.log(teacher_a)
    assert distillation_loss(matching, unlabelled, teacher_a, alpha=0.5, temperature=2.0) < 1e-5
    hard = distillation_loss(logits, torch.tensor([0, 1]), teacher_a, alpha=1.0, temperature=1.0)
    assert torch.isclose(hard, torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])))


def test_distillation_and_ensemble_end_to_end(tmp_path, tiny_bert, cls_rows):
    from tuneforge.inference import load_predictor
    from tuneforge.inference.ensemble import build_ensemble
    from tuneforge.tasks import load_dataset

    a = train(_cfg(tmp_path, tiny_bert, cls_rows, "a", seed=1), console=QUIET)
    b = train(_cfg(tmp_path, tiny_bert, cls_rows, "b", seed=2, method="lora"), console=QUIET)
    build_ensemble([a.output, b.output], tmp_path / "ens")
    ens = load_predictor(tmp_path / "ens")
    examples = load_dataset(write_jsonl(tmp_path / "x.jsonl", cls_rows), "classification").examples
    pa, pb = load_predictor(a.output).predict_proba(examples), load_predictor(b.output).predict_proba(examples)
    assert np.allclose(ens.predict_proba(examples), (pa + pb) / 2, atol=1e-6)
    assert ens.predict(["a good film"])[0]["label"] in {"negative", "positive"}
    unl = tmp_path / "unlabeled.txt"
    unl.write_text("a fine film\nso very boring\n")
    student = train(_cfg(tmp_path, tiny_bert, cls_rows, "student", distill_from=str(tmp_path / "ens"),
                         unlabeled_data=str(unl)), console=QUIET)
    assert student.manifest["data"]["unlabeled"]["texts"] == 2
    assert np.isfinite(student.manifest["training"]["final_loss"])
    # the teacher's probabilities reach the loss: the student learning from the teacher alone (alpha 0) ends
    # elsewhere than one learning from the labels alone (alpha 1). Trainer used to drop them as "unused columns",
    # and every student trained on the hard labels, whatever the settings.
    ends = []
    for name, alpha in (("soft", 0.0), ("hard", 1.0)):
        run = train(_cfg(tmp_path, tiny_bert, cls_rows, name, distill_from=str(tmp_path / "ens"),
                         unlabeled_data=str(unl), distill_alpha=alpha, epochs=3), console=QUIET)
        ends.append(load_predictor(run.output).predict_proba(examples))
    assert np.abs(ends[0] - ends[1]).max() > 1e-3


def test_layer_decay_and_frozen_layers(tiny_bert):
    from tuneforge.training.optim import build_optimizer, freeze_lower_layers

    model = _tiny_cls(tiny_bert)
    frozen = freeze_lower_layers(model, 1)
    assert frozen > 0 and not model.bert.encoder.layer[0].attention.self.query.weight.requires_grad
    assert model.bert.encoder.layer[1].attention.self.query.weight.requires_grad
    opt = build_optimizer(model, lr=1.0, weight_decay=0.0, head_lr_multiplier=10, layer_decay=0.5, n_layers=2)
    rates = sorted({g["lr"] for g in opt.param_groups})
    assert rates == [0.5, 10.0]  # layer 1 of 2 at 0.5^(3-2); head at 10x


def test_frozen_layers_stay_as_loaded_in_a_trained_run(tmp_path, tiny_bert, cls_rows):
    from safetensors.torch import load_file

    run = train(_cfg(tmp_path, tiny_bert, cls_rows, "frozen", freeze_layers=1, epochs=2), console=QUIET)
    assert run.manifest["resolved"]["freeze_layers"] == 1
    base, trained = load_file(str(tiny_bert / "model.safetensors")), load_file(str(run.output / "model.safetensors"))

    def moved(name):  # the base model's keys lack the task model's "bert." prefix
        return not torch.equal(base[name], trained["bert." + name])

    assert not moved("encoder.layer.0.attention.self.query.weight")
    assert not moved("embeddings.word_embeddings.weight")
    assert moved("encoder.layer.1.attention.self.query.weight")


def test_eda_english_and_chinese_and_marks_rows():
    import random

    from tuneforge.data.augment import augment_examples, eda, split_text

    synonyms = {"good": ["great", "fine"], "movie": ["film"], "电影": ["影片"], "好看": ["精彩"]}.get
    syn = lambda w: synonyms(w) or []  # noqa: E731
    words, sep = split_text("这部电影非常好看")
    assert sep == "" and "电影" in words
    rng = random.Random(0)
    outs = {eda("a good movie with a good plot", synonyms=syn, rate=0.3, rng=rng) for _ in range(30)}
    assert len(outs) > 3 and any("great" in o or "fine" in o or "film" in o for o in outs)
    zh = {eda("这部电影非常好看", synonyms=syn, rate=0.3, rng=rng) for _ in range(30)}
    assert any("影片" in o or "精彩" in o for o in zh) and all(" " not in o for o in zh)
    rows = augment_examples([{"text": "a good movie", "label": "pos"}], synonyms=syn, copies=3, rate=0.3, seed=0)
    assert rows[0].get("augmented") is None and all(r["augmented"] and r["augmented_from"] == 0 for r in rows[1:])


def test_embedding_synonyms_are_neighbours_in_the_backbone_space():
    from transformers import BertTokenizerFast

    from tuneforge.data.augment import EmbeddingSynonyms

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "great", "bad", "awful", "##s"]
    tok = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)})
    emb = np.zeros((len(vocab), 2), dtype=np.float32)
    emb[:, 0] = 0.01
    emb[5], emb[6], emb[7], emb[8] = [1, 0.1], [1, 0.2], [-1, 0.1], [-1, 0.2]
    syn = EmbeddingSynonyms(tok, emb, k=1)
    assert syn("good") == ["great"] and syn("awful") == ["bad"]


def test_augmented_rows_are_refused_as_dev_data(tmp_path, cls_rows):
    from tuneforge.errors import DataError
    from tuneforge.training import load_training_data

    train_file = write_jsonl(tmp_path / "t.jsonl", cls_rows)
    dev = write_jsonl(tmp_path / "d.jsonl", cls_rows[:3] + [{**cls_rows[0], "augmented": True}])
    with pytest.raises(DataError, match="augmented"):
        load_training_data("classification", train_file, dev)


def test_training_augmentation_is_recorded_and_dev_untouched(tmp_path, tiny_bert, cls_rows):
    r = train(_cfg(tmp_path, tiny_bert, cls_rows, "aug", augment="eda", augment_copies=1), console=QUIET)
    assert r.manifest["data"]["train"]["augmented_rows"] > 0
    assert r.manifest["data"]["eval"]["examples"] == len(cls_rows)


def test_zero_shot_picks_the_most_similar_label_text():
    from tuneforge.methods.sentence import label_texts

    assert label_texts(["card_arrival", "neg"], "About {label}.", {"neg": "a bad review"}) == \
        ["About card arrival.", "a bad review"]


def test_setfit_pseudo_labels_are_confident_and_balanced():
    from tuneforge.methods.setfit.method import select_pseudo_labels

    proba = np.array([[0.95, 0.05], [0.97, 0.03], [0.6, 0.4], [0.08, 0.92], [0.99, 0.01]])
    idx, lab = select_pseudo_labels(proba, 0.9)
    assert sorted(zip(idx.tolist(), lab.tolist(), strict=True)) == [(3, 1), (4, 0)]
    assert len(select_pseudo_labels(np.array([[0.95, 0.05]]), 0.9)[0]) == 0


def test_optuna_study_resumes_from_its_storage(tmp_path, tiny_bert, cls_rows):
    from tuneforge.training.search import search

    data = write_jsonl(tmp_path / "t.jsonl", cls_rows)
    values = {"task": "classification", "data": str(data), "eval_data": str(data), "base_model": str(tiny_bert),
              "epochs": 1, "precision": "fp32"}
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    def space(trial, values):
        return {"learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-3, log=True)}

    first = search(values, trials=1, storage=storage, study_name="s", output=tmp_path / "search", space=space,
                   console=QUIET)
    assert first["trials"]["complete"] == 1
    second = search(values, trials=2, storage=storage, study_name="s", output=tmp_path / "search", space=space,
                    console=QUIET)
    assert second["trials"]["complete"] + second["trials"]["pruned"] == 2  # one more, not two more
    assert json.loads((tmp_path / "search" / "best.json").read_text())["run"]


def test_pretrain_lowers_held_out_loss_and_output_is_a_base_model(tmp_path, tiny_bert, cls_rows):
    from transformers import BertForMaskedLM

    from tuneforge.training.pretrain import pretrain

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(["the film was good and the plot was fun", "the movie was bad and boring"] * 40))
    # the tiny base has no MLM head yet; BertForMaskedLM adds one
    m = pretrain(data=corpus, base_model=str(tiny_bert), output=tmp_path / "adapted", epochs=3, learning_rate=5e-3,
                 batch_size=8, eval_share=0.1, console=QUIET)
    assert m["pretrain"]["eval_loss_after"] < m["pretrain"]["eval_loss_before"]
    assert BertForMaskedLM.from_pretrained(str(tmp_path / "adapted")) is not None
    r = train(_cfg(tmp_path, tmp_path / "adapted", cls_rows, "from-adapted"), console=QUIET)
    assert r.manifest["base_model"]["name"] == "adapted"


def test_setfit_max_pairs_caps_the_contrastive_steps(tmp_path, tiny_bert, cls_rows):
    # 10 iterations over the rows would be hundreds of pairs; 16 pairs at batch 8 is 2 steps
    cfg = _cfg(tmp_path, tiny_bert, cls_rows, "setfit-cap", method="setfit", sentence_encoder="base",
               setfit_iterations=10, setfit_max_pairs=16, batch_size=8)
    man = train(cfg, console=QUIET).manifest
    assert man["training"]["steps"] == 2
    assert man["method_info"]["max_pairs"] == 16
