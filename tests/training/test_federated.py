"""Federated fine-tuning (Flower): the seeded IID and Dirichlet splits and their label skew, a round of two
clients (the adapter moves, Flower's FedAvg gives the example-weighted mean), the run folder predicts like any
LoRA run, and bad options are refused by name. The Ray simulation and real Flower processes are slow tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from tests.conftest import write_jsonl
from tuneforge.cli import main
from tuneforge.errors import ConfigError
from tuneforge.settings import Settings
from tuneforge.training.federated import label_skew, make_federated_config, parse_split, split_dirichlet, split_iid
from tuneforge.training.federated.client import build_model, local_fit
from tuneforge.training.federated.run import client_spec, federated_train, prepare_federated
from tuneforge.training.federated.weights import get_trainable, weighted_mean

QUIET = Console(file=open(os.devnull, "w"))  # noqa: SIM115

LABELS = [f"c{i % 5}" for i in range(500)]


# ------------------------------------------------------------------------------------------------------ splits
def _check_partition(silos: list[list[int]], n: int) -> None:
    flat = [i for s in silos for i in s]
    assert sorted(flat) == list(range(n))  # every example in exactly one silo


def test_iid_split_is_seeded_even_and_unskewed():
    a, b = split_iid(500, 5, seed=1), split_iid(500, 5, seed=1)
    assert a == b and a != split_iid(500, 5, seed=2)
    _check_partition(a, 500)
    assert {len(s) for s in a} == {100}
    skew = label_skew([[LABELS[i] for i in s] for s in a])
    assert skew["mean_tv_distance"] < 0.12 and skew["mean_class_coverage"] == 1.0


def test_dirichlet_split_is_seeded_and_skews_labels_by_alpha():
    a = split_dirichlet(LABELS, 5, alpha=0.1, seed=3)
    assert a == split_dirichlet(LABELS, 5, alpha=0.1, seed=3) and a != split_dirichlet(LABELS, 5, alpha=0.1, seed=4)
    _check_partition(a, len(LABELS))
    assert min(len(s) for s in a) >= 1
    strong = label_skew([[LABELS[i] for i in s] for s in a])
    weak = label_skew([[LABELS[i] for i in s] for s in split_dirichlet(LABELS, 5, alpha=100.0, seed=3)])
    iid = label_skew([[LABELS[i] for i in s] for s in split_iid(len(LABELS), 5, seed=3)])
    assert strong["mean_tv_distance"] > 0.4 > weak["mean_tv_distance"]
    assert weak["mean_tv_distance"] < 0.15 and iid["mean_tv_distance"] < 0.15
    assert strong["mean_class_coverage"] < 1.0  # some clients miss classes entirely


def test_label_skew_of_disjoint_and_identical_silos():
    assert label_skew([["a", "a"], ["b", "b"]])["mean_tv_distance"] == 0.5
    assert label_skew([["a", "b"], ["b", "a"]])["mean_tv_distance"] == 0.0


@pytest.mark.parametrize("bad", ["dirichlet", "dirichlet:0", "dirichlet:-1", "dirichlet:x", "zipf"])
def test_bad_split_is_refused_by_name(bad):
    with pytest.raises(ConfigError, match="split"):
        parse_split(bad)


# ----------------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize(("values", "named"), [
    ({"data": "t.jsonl", "data_dir": "silos"}, "data, data_dir"),
    ({}, "data, data_dir"),
    ({"data": "t.jsonl"}, "clients"),
    ({"data_dir": "silos", "split": "iid"}, "split"),
    ({"data_dir": "silos", "clients": 3}, "clients"),
    ({"data": "t.jsonl", "clients": 2, "split": "dirichlet:abc"}, "split"),
    ({"data": "t.jsonl", "clients": 2, "clients_per_round": 3}, "clients_per_round"),
    ({"data": "t.jsonl", "clients": 2, "proximal_mu": 0.1}, "proximal_mu"),
    ({"data": "t.jsonl", "clients": 2, "strategy": "fedsgd"}, "strategy"),
    ({"data": "t.jsonl", "clients": 2, "rounds": 0}, "rounds"),
    ({"data": "t.jsonl", "clients": 2, "dp_noise_multiplier": 1.0}, "dp_noise_multiplier, dp_clipping_norm"),
])
def test_bad_options_are_refused_by_name(values, named):
    with pytest.raises(ConfigError) as e:
        make_federated_config({"task": "classification", "output": "out", **values})
    assert any(p.startswith(named) for p in e.value.problems), e.value.problems


def test_cli_refuses_bad_options_with_exit_code_2(tmp_path, capsys):
    code = main(["federated", "--data", str(tmp_path / "t.jsonl"), "--split", "dirichlet:0", "--clients", "2",
                 "--strategy", "fedavg", "--proximal-mu", "0.5", "-o", str(tmp_path / "out")])
    assert code == 2
    text = capsys.readouterr().err
    assert "split" in text and "proximal_mu" in text
    assert not (tmp_path / "out").exists()


def test_a_task_without_one_label_per_text_is_refused(tmp_path, tiny_bert, ner_rows):
    data = write_jsonl(tmp_path / "ner.jsonl", ner_rows)
    fc = make_federated_config({"task": "ner", "data": str(data), "clients": 2, "base_model": str(tiny_bert),
                                "output": str(tmp_path / "out")})
    with pytest.raises(ConfigError, match="task"):
        prepare_federated(fc, Settings(), QUIET)


def test_strategies_are_flowers_own_and_dp_wraps_a_plain_mean():
    from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg, FedProx

    from tuneforge.training.federated.client import UNIFORM_KEY, WEIGHT_KEY
    from tuneforge.training.federated.server import make_strategy

    base = {"task": "classification", "output": "out", "data": "t.jsonl", "clients": 4}
    avg = make_strategy(make_federated_config({**base, "clients_per_round": 2}), n_clients=4)
    assert type(avg) is FedAvg and avg.weighted_by_key == WEIGHT_KEY
    assert (avg.fraction_train, avg.min_train_nodes, avg.min_available_nodes) == (0.5, 2, 4)
    prox = make_strategy(make_federated_config({**base, "strategy": "fedprox", "proximal_mu": 0.3}), n_clients=4)
    assert isinstance(prox, FedProx) and prox.proximal_mu == 0.3
    dp = make_strategy(make_federated_config({**base, "dp_noise_multiplier": 0.8, "dp_clipping_norm": 2.0}),
                       n_clients=4)
    assert isinstance(dp, DifferentialPrivacyClientSideFixedClipping)
    assert (dp.noise_multiplier, dp.clipping_norm, dp.num_sampled_clients) == (0.8, 2.0, 4)
    assert dp.strategy.weighted_by_key == UNIFORM_KEY  # the noise is calibrated for a plain mean


# ------------------------------------------------------------------------------------------------ one round
def _rows(n: int = 24) -> list[dict]:
    good = ["a good movie", "great fun film", "i love this film", "very good", "a great film", "good fun"]
    bad = ["a bad movie", "awful and boring", "i hate this film", "very bad", "not good", "boring film"]
    return [{"text": (good if i % 2 else bad)[i % 6], "label": "positive" if i % 2 else "negative"}
            for i in range(n)]


def _silos(tmp_path: Path, tiny_bert: Path, **extra):
    data = write_jsonl(tmp_path / "train.jsonl", _rows())
    fc = make_federated_config({"task": "classification", "data": str(data), "clients": 2, "split": "iid",
                                "base_model": str(tiny_bert), "output": str(tmp_path / "run"), "batch_size": 4,
                                "learning_rate": 5e-3, "rounds": 1, **extra})
    return fc, prepare_federated(fc, Settings(), QUIET)


def test_a_two_client_round_moves_the_adapter_and_fedavg_is_the_weighted_mean(tmp_path, tiny_bert):
    from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict
    from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

    fc, silos = _silos(tmp_path, tiny_bert)
    silos.indices = [silos.indices[0][:4], silos.indices[1]]  # unequal silos: 4 and 12 examples
    spec = client_spec(silos)
    model, _, _ = build_model(spec)
    initial = get_trainable(model)
    # only the adapter and the head travel: a small share of the model, no base weights
    assert initial and all("lora_" in k or "modules_to_save" in k for k in initial)
    assert sum(a.size for a in initial.values()) < 0.2 * sum(p.numel() for p in model.parameters())
    results = [local_fit(spec, i, initial, server_round=1) for i in range(2)]
    assert [r.examples for r in results] == [4, 12]
    for r in results:
        moved = [k for k in initial if not np.allclose(r.arrays[k], initial[k])]
        assert any("lora_B" in k for k in moved) and any("modules_to_save" in k for k in moved)
    replies = [RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in r.arrays.items()}),
                           "metrics": MetricRecord({"num-examples": r.examples})}) for r in results]
    agg = aggregate_arrayrecords(replies, "num-examples")  # what Flower's FedAvg.aggregate_train computes
    expected = weighted_mean([r.arrays for r in results], [4, 12])
    for k, v in zip(agg.keys(), agg.to_numpy_ndarrays(), strict=True):
        np.testing.assert_allclose(v, expected[k], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(v, 0.25 * results[0].arrays[k] + 0.75 * results[1].arrays[k], rtol=1e-5,
                                   atol=1e-7)


def test_fedprox_keeps_the_update_closer_to_the_global_model(tmp_path, tiny_bert):
    fc, silos = _silos(tmp_path, tiny_bert)
    spec = client_spec(silos)
    model, _, _ = build_model(spec)
    initial = get_trainable(model)

    def distance(mu: float) -> float:
        r = local_fit(spec, 0, initial, server_round=1, mu=mu)
        return float(np.sqrt(sum(((r.arrays[k] - initial[k]) ** 2).sum() for k in initial)))

    assert distance(50.0) < 0.8 * distance(0.0)


def _sequential(fc, spec, n, initial, evaluate, on_round):
    """The rounds without Flower's transport (the test's stand-in for the Ray simulation): every client in turn,
    then Flower's FedAvg aggregation."""
    from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict
    from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

    from tuneforge.training.federated.server import RoundRecord

    arrays = dict(initial)
    on_round(RoundRecord(0, metrics=evaluate(0, arrays)))
    for r in range(1, fc.rounds + 1):
        results = [local_fit(spec, i, arrays, server_round=r, mu=fc.mu) for i in range(n)]
        agg = aggregate_arrayrecords([RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in x.arrays.items()}),
                                                  "metrics": MetricRecord({"num-examples": x.examples})})
                                      for x in results], "num-examples")
        arrays = dict(zip(agg.keys(), agg.to_numpy_ndarrays(), strict=True))
        on_round(RoundRecord(r, clients=n, examples=sum(x.examples for x in results),
                             steps=sum(x.steps for x in results), train_loss=results[0].train_loss,
                             metrics=evaluate(r, arrays)))
    return arrays


def test_the_run_folder_predicts_like_a_lora_run(tmp_path, tiny_bert):
    from tuneforge.inference import load_predictor
    from tuneforge.runs import read_manifest

    dev = write_jsonl(tmp_path / "dev.jsonl", _rows(8))
    fc, _ = _silos(tmp_path, tiny_bert, eval_data=str(dev), rounds=2)
    events: list[dict] = []
    result = federated_train(fc, console=QUIET, on_event=events.append, runner=_sequential)
    man = read_manifest(result.output)
    assert man["method"] == "lora" and (result.output / "adapter_model.safetensors").exists()
    fed = man["federated"]
    assert fed["rounds"] == 2 and fed["clients"] == 2 and fed["strategy"] == "fedavg"
    assert [r["round"] for r in fed["per_round"]] == [0, 1, 2] and "accuracy" in fed["per_round"][-1]
    b = fed["bytes_per_round"]
    assert 0 < b["adapters_and_head_per_client"] < b["full_model_per_client"]
    assert b["adapters_and_head_total"] == 2 * 2 * b["adapters_and_head_per_client"]
    assert [e["round"] for e in events if e["type"] == "federated_round"] == [0, 1, 2]
    card = (result.output / "README.md").read_text()  # its model card, not peft's
    assert card.startswith("---") and "model-index" in card and "- federated-learning" in card
    metrics = json.loads(next(result.output.glob("eval-*/metrics.json")).read_text())
    assert metrics["accuracy"] == pytest.approx(fed["per_round"][-1]["accuracy"], abs=1e-4)
    # the saved folder reloads to the weights the rounds ended with: its predictions are the dev report's
    from tuneforge.tasks import load_dataset

    pred = load_predictor(result.output)
    saved = [json.loads(line) for line in next(result.output.glob("eval-*/predictions.jsonl")).read_text()
             .splitlines()]
    for before, now in zip(saved, pred.predict_examples(load_dataset(dev, "classification").examples), strict=True):
        for label, score in now["scores"].items():
            assert abs(before["scores"][label] - score) < 1e-4
    assert main(["predict", str(result.output), "a wonderful film"]) == 0
    # an existing run is not overwritten without --overwrite
    with pytest.raises(Exception, match="already exists"):
        federated_train(fc, console=QUIET, runner=_sequential)


def test_silos_from_a_folder_keep_their_files(tmp_path, tiny_bert):
    silo_dir = tmp_path / "silos"
    silo_dir.mkdir()
    rows = _rows()
    write_jsonl(silo_dir / "bank-a.jsonl", rows[:6])
    write_jsonl(silo_dir / "bank-b.jsonl", [r for r in rows[6:] if r["label"] == "positive"])  # one class only
    (silo_dir / "notes.txt").write_text("not a silo")
    fc = make_federated_config({"task": "classification", "data_dir": str(silo_dir), "base_model": str(tiny_bert),
                                "output": str(tmp_path / "run")})
    silos = prepare_federated(fc, Settings(), QUIET)
    assert silos.names == ["bank-a", "bank-b"]
    assert [len(i) for i in silos.indices] == [6, 9]
    assert Counter(silos.labels(1)) == {"positive": 9}
    assert silos.prepared.labels == ["negative", "positive"]
    assert all(s["sha256"].startswith("sha256:") for s in silos.sources)


# ------------------------------------------------------------------------------------- Flower for real (slow)
@pytest.mark.slow
def test_the_cli_runs_a_flower_simulation_on_ray(tmp_path, tiny_bert):
    """The Ray simulation end to end: 3 clients, 2 sampled per round, FedProx with DP on the updates."""
    data = write_jsonl(tmp_path / "train.jsonl", _rows(30))
    dev = write_jsonl(tmp_path / "dev.jsonl", _rows(8))
    out = tmp_path / "fed"
    code = main(["federated", "--data", str(data), "--split", "dirichlet:0.5", "--clients", "3",
                 "--clients-per-round", "2", "--rounds", "2", "--eval-data", str(dev), "--strategy", "fedprox",
                 "--dp-noise-multiplier", "0.1", "--dp-clipping-norm", "1.0", "--base-model", str(tiny_bert),
                 "--batch-size", "4", "--cpus", "2", "-o", str(out)])
    assert code == 0
    fed = json.loads((out / "tuneforge.json").read_text())["federated"]
    assert fed["mode"] == "simulation" and fed["dp"]["clipping_norm"] == 1.0 and fed["proximal_mu"] == 0.01
    assert [r["clients"] for r in fed["per_round"][1:]] == [2, 2]
    assert fed["per_round"][1]["bytes_received_from_clients"] == 2 * fed["bytes_per_round"][
        "adapters_and_head_per_client"]
    assert "accuracy" in fed["per_round"][-1]
    assert main(["predict", str(out), "a wonderful film"]) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_real_flower_server_and_two_client_processes(tmp_path, tiny_bert):
    """A Flower server and two client processes on 127.0.0.1 (gRPC), one round: the adapter the server ends
    with differs from the one it started with, and both clients trained."""
    silo_dir = tmp_path / "silos"
    silo_dir.mkdir()
    rows = _rows()
    write_jsonl(silo_dir / "a.jsonl", rows[:12])
    write_jsonl(silo_dir / "b.jsonl", rows[12:])
    port = _free_port()
    out = tmp_path / "run"
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    common = ["--base-model", str(tiny_bert), "--batch-size", "4", "--lr", "5e-3"]
    server = subprocess.Popen([sys.executable, "-m", "tuneforge.training.federated.process", "server",
                               "--address", f"127.0.0.1:{port}", "--data-dir", str(silo_dir), "--rounds", "1",
                               "--output", str(out), *common], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    clients = []
    try:
        time.sleep(2)
        for silo in ("a", "b"):
            clients.append(subprocess.Popen(
                [sys.executable, "-m", "tuneforge.training.federated.process", "client", "--address",
                 f"127.0.0.1:{port}", "--data-dir", str(silo_dir), "--silo", silo, *common], env=env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        server_log, _ = server.communicate(timeout=240)
        assert server.returncode == 0, server_log[-3000:]
        for c in clients:
            log, _ = c.communicate(timeout=60)
            assert c.returncode == 0, log[-3000:]
    finally:
        for proc in [server, *clients]:
            if proc.poll() is None:
                proc.kill()
    man = json.loads((out / "tuneforge.json").read_text())
    fed = man["federated"]
    assert fed["mode"] == "processes" and fed["per_round"][-1]["clients"] == 2
    assert fed["adapter_change_l2"] > 0
    assert main(["predict", str(out), "a wonderful film"]) == 0
