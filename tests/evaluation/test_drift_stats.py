"""The drift statistics on synthetic data: the same distribution is no drift, a shifted one is; PSI and the
chi-square test against values worked out by hand; the MMD permutation p-value's behaviour."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from tuneforge.evaluation.drift.stats import PSI_EPS, chi_square_p, domain_classifier_auc, mmd_rbf, psi, shares


def _gauss(n: int, shift: float, seed: int, dim: int = 8) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim))
    x[:, 0] += shift
    return x


def test_the_domain_classifier_cannot_tell_one_distribution_from_itself():
    auc = domain_classifier_auc(_gauss(400, 0.0, 1), _gauss(150, 0.0, 2))
    assert 0.4 < auc < 0.6


def test_the_domain_classifier_recognises_a_shifted_window():
    assert domain_classifier_auc(_gauss(400, 0.0, 1), _gauss(150, 1.5, 2)) > 0.8
    # a larger shift is recognised better
    assert (domain_classifier_auc(_gauss(400, 0.0, 1), _gauss(150, 3.0, 2))
            > domain_classifier_auc(_gauss(400, 0.0, 1), _gauss(150, 0.7, 2)))


def test_mmd_p_value_is_large_for_the_same_distribution_and_tiny_for_a_shift():
    same = mmd_rbf(_gauss(120, 0.0, 1), _gauss(80, 0.0, 2), permutations=200)
    shifted = mmd_rbf(_gauss(120, 0.0, 1), _gauss(80, 1.0, 2), permutations=200)
    assert same.p_value > 0.05 and abs(same.value) < shifted.value
    assert shifted.p_value == pytest.approx(1 / 201)  # no relabelling reaches the observed MMD
    assert shifted.bandwidth > 0


def test_mmd_p_value_is_roughly_uniform_under_the_null():
    """Over many pairs of samples of one distribution, about 10% of p-values fall below 0.1."""
    ps = [mmd_rbf(_gauss(40, 0.0, 2 * s), _gauss(30, 0.0, 2 * s + 1), permutations=99, seed=s).p_value
          for s in range(40)]
    assert 0 <= sum(p < 0.1 for p in ps) <= 10
    assert 0.3 < float(np.mean(ps)) < 0.7


def test_mmd_is_deterministic_for_a_seed():
    a, b = _gauss(50, 0.0, 1), _gauss(40, 0.3, 2)
    assert mmd_rbf(a, b, seed=3) == mmd_rbf(a, b, seed=3)


def test_psi_by_hand():
    ref, cur = np.array([0.5, 0.5]), np.array([0.8, 0.2])
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert psi(ref, cur) == pytest.approx(expected)  # 0.4158...
    assert psi(ref, ref) == 0.0
    # a category with no examples gets Evidently's 0.0001 share instead of a log of zero
    assert psi(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == pytest.approx(
        (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - PSI_EPS) * math.log(0.5 / PSI_EPS))


def test_shares_and_chi_square_by_hand():
    assert shares(["a", "b", "a", "a"], ["a", "b", "c"]).tolist() == [0.75, 0.25, 0.0]
    # 60/40 observed against 50/50 expected: chi2 = (10² + 10²) / 50 = 4, one degree of freedom: p = 0.0455
    assert chi_square_p(np.array([0.5, 0.5]), np.array([60, 40])) == pytest.approx(0.04550, abs=1e-4)
    assert chi_square_p(np.array([0.5, 0.5]), np.array([50, 50])) == pytest.approx(1.0)
    assert chi_square_p(np.array([1.0]), np.array([30])) == 1.0  # one category: nothing to test


class _VectorModel:
    """A DriftModel without label probabilities (an NER or QA model): each text's vector is a fixed function of
    its words, so two vocabularies are two distributions."""

    labels: list[str] = []
    tokenizer = None

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = []
        for t in texts:
            v = np.zeros(16)
            for w in t.split():
                v[zlib.crc32(w.encode()) % 16] += 1.0
            rows.append(v / max(1.0, float(np.linalg.norm(v))))
        return np.array(rows)

    def probabilities(self, examples):
        return None


def test_a_report_without_predictions_has_the_embedding_and_vocabulary_checks():
    from tuneforge.evaluation.drift import drift_report

    rng = np.random.default_rng(0)
    words, other = ["paris", "london", "john", "mary", "acme"], ["refund", "order", "package", "account", "help"]

    def rows(vocab: list[str], n: int) -> list[dict]:
        return [{"tokens": list(rng.choice(vocab, size=5))} for _ in range(n)]

    report = drift_report(_VectorModel(), rows(words, 80), rows(other, 30), permutations=20)
    assert report.drift and "predictions" not in report.details
    names = {c["name"] for c in report.details["checks"]}
    assert names == {"domain_classifier_auc", "mmd_p_value", "unseen_word_rate_rise"}
    assert report.details["vocabulary"]["unseen_word_rate"] == 1.0
    assert report.details["vocabulary"]["current_unk_token_rate"] is None  # no tokenizer to ask
