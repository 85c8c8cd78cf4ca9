"""Knowing when not to answer: the confidence policy of a single-label classification run.

A run trained with ``--oos-label``, ``--reject`` or ``--calibrate`` fits, on its dev set after training, a
temperature (:mod:`.calibration`) and a threshold per out-of-scope score (:mod:`.reject`), and keeps them in its
manifest as a :class:`Confidence`. Its predictions then carry calibrated scores, and with a reject option an input
scoring below the threshold gets the out-of-scope label::

    {"label": "oos", "score": 0.41, "rejected": true, "best_label": "card_arrival", "scores": {...}}

(``score`` is the calibrated probability of ``best_label``, the best known class; a prediction that is not rejected
carries ``"rejected": false``). The out-of-scope label is never one of the known classes: examples labelled with it
are left out of the temperature fit and of the calibration error, and counted on their own in the metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tuneforge.errors import ConfigError
from tuneforge.tasks.classification.calibration import (
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)
from tuneforge.tasks.classification.reject import (
    REJECT_METHODS,
    fit_threshold,
    fpr_at_tpr,
    in_scope_scores,
    oos_auroc,
    oos_counts,
)

__all__ = ["MANIFEST_KEY", "REJECT_CHOICES", "Confidence", "fit_confidence"]

#: the values of ``--reject``
REJECT_CHOICES = ("auto", *REJECT_METHODS, "none")
#: the key of the manifest that holds a run's :class:`Confidence`
MANIFEST_KEY = "confidence"


@dataclass(frozen=True)
class Confidence:
    """A run's calibration and reject option, as fitted on its dev set."""

    #: the label of out-of-scope inputs (and of rejected ones); None: no out-of-scope class
    oos_label: str | None = None
    #: logits are divided by it before the softmax (1: not calibrated)
    temperature: float = 1.0
    calibrated: bool = False
    #: the reject option applied: msp, energy or none
    reject: str = "none"
    #: the share of correctly labelled in-scope dev examples the thresholds keep answering
    target: float = 0.95
    #: a fitted threshold per out-of-scope score (also for a run that applies none: what it would give)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    #: what the fit measured on the dev set (kept in the manifest for people; predictions do not use it)
    dev: Mapping[str, Any] = field(default_factory=dict)

    @property
    def rejecting(self) -> bool:
        return self.reject != "none"

    def known(self, labels: Sequence[str]) -> np.ndarray:
        """Which of the head's ``labels`` are known classes (all but a trained out-of-scope class)."""
        return np.array([label != self.oos_label for label in labels], dtype=bool)

    # --- predictions --------------------------------------------------------------------------------------

    def decode(self, logits: np.ndarray, labels: Sequence[str]) -> list[dict[str, Any]]:
        """One prediction per row of ``logits``: calibrated scores, and the reject option applied. The internal
        ``ood`` entry (best known label, its scores) is what scoring needs; users never see it."""
        s = in_scope_scores(logits, self.known(labels), self.temperature)
        threshold = self.thresholds.get(self.reject)
        preds: list[dict[str, Any]] = []
        for i, p in enumerate(s["probs"]):
            best = labels[int(s["best"][i])]
            msp, head_oos = float(s["msp"][i]), bool(s["head_oos"][i])
            ood: dict[str, Any] = {"best_label": best, "msp": msp, "energy": float(s["energy"][i]),
                                   "raw_score": float(s["raw"][i]), "head_oos": head_oos}
            if self.rejecting and threshold is not None:
                rejected = head_oos or float(ood[self.reject]) < threshold
                pred: dict[str, Any] = {"label": self.oos_label if rejected else best,
                                        "score": round(msp, 6), "rejected": rejected}
                if rejected:
                    pred["best_label"] = best
            else:
                j = int(p.argmax())
                pred = {"label": labels[j], "score": round(float(p[j]), 6)}
            top = np.argsort(-p)[: min(5, len(labels))]
            pred["scores"] = {labels[k]: round(float(p[k]), 6) for k in top}
            pred["ood"] = ood
            preds.append(pred)
        return preds

    # --- metrics ------------------------------------------------------------------------------------------

    def metrics(self, predictions: Sequence[dict[str, Any]], examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Calibration of the best known class's score on in-scope examples, and with an out-of-scope label:
        in-scope accuracy, out-of-scope precision / recall / F1 / AUROC / FPR at 95% TPR, the threshold used, and
        under ``out_of_scope`` what every option (none, msp, energy) gives with its fitted threshold."""
        refs = np.array([str(ex["label"]) for ex in examples], dtype=object)
        ood = [p["ood"] for p in predictions]
        best = np.array([o["best_label"] for o in ood], dtype=object)
        scores = {m: np.array([o[m] for o in ood], dtype=np.float64) for m in REJECT_METHODS}
        head_oos = np.array([o["head_oos"] for o in ood], dtype=bool)
        is_oos = refs == self.oos_label if self.oos_label is not None else np.zeros(len(refs), bool)
        ins = ~is_oos
        raw = np.array([o["raw_score"] for o in ood], dtype=np.float64)
        out = calibration_metrics(scores["msp"][ins], (best == refs)[ins], raw[ins] if self.calibrated else None)
        if self.calibrated:
            out["temperature"] = round(self.temperature, 6)
        if self.oos_label is None:
            return out
        predicted = np.array([p["label"] for p in predictions], dtype=object)
        flat: dict[str, Any] = {}
        if ins.any():
            flat["in_scope_accuracy"] = float((predicted[ins] == refs[ins]).mean())
        if is_oos.any():
            flat.update(oos_counts(is_oos, predicted == self.oos_label))
        method = self.reject if self.rejecting else "msp"
        for name, value in (("oos_auroc", oos_auroc(scores[method], is_oos)),
                            ("fpr_at_95_tpr", fpr_at_tpr(scores[method], is_oos))):
            if value is not None:
                flat[name] = value
        flat["reject_method"] = self.reject
        flat["reject_threshold"] = self.thresholds.get(self.reject)
        flat["reject_rate"] = float((predicted == self.oos_label).mean()) if len(predicted) else 0.0
        options = {"none": self._option(head_oos, best, refs, is_oos)}
        for m, t in self.thresholds.items():
            options[m] = {"threshold": t, **self._option(head_oos | (scores[m] < t), best, refs, is_oos)}
            for name, value in (("auroc", oos_auroc(scores[m], is_oos)), ("fpr_at_95_tpr",
                                                                          fpr_at_tpr(scores[m], is_oos))):
                if value is not None:
                    options[m][name] = value
        return {**flat, **out, "out_of_scope": options}

    @staticmethod
    def _option(rejected: np.ndarray, best: np.ndarray, refs: np.ndarray, is_oos: np.ndarray) -> dict[str, Any]:
        ins = ~is_oos
        row: dict[str, Any] = {}
        if ins.any():
            row["in_scope_accuracy"] = float((~rejected & (best == refs))[ins].mean())
        if is_oos.any():
            row.update(oos_counts(is_oos, rejected))
        row["reject_rate"] = float(rejected.mean()) if len(rejected) else 0.0
        return row

    def summary(self) -> list[str]:
        """What the policy gives on the dev set it was fitted on, in lines for people."""
        dev, lines = self.dev, []
        if self.calibrated:
            lines.append(f"Calibration: temperature {self.temperature:.3f}; on dev ECE "
                         f"{dev.get('ece_uncalibrated', 0):.4f} -> {dev.get('ece', 0):.4f}, NLL "
                         f"{dev.get('nll_uncalibrated', 0):.4f} -> {dev.get('nll', 0):.4f}")
        for m in REJECT_METHODS:
            fit = dev.get(m)
            if not isinstance(fit, dict):
                continue
            oos = (f", out-of-scope recall {fit['oos_recall']:.3f} precision {fit['oos_precision']:.3f} "
                   f"F1 {fit['oos_f1']:.3f}" if fit.get("oos_f1") is not None else "")
            lines.append(f"Reject option {m} ({'applied' if m == self.reject else 'not applied'}): threshold "
                         f"{fit['threshold']:.4g}; on dev in-scope accuracy {fit['in_scope_accuracy']:.3f}, "
                         f"{fit['kept_correct']:.3f} of the right answers kept{oos}")
        if "auto" in dev:
            lines.append(f"--reject auto chose {dev['auto']}")
        return lines

    # --- the manifest -------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"oos_label": self.oos_label, "temperature": self.temperature, "calibrated": self.calibrated,
                "reject": self.reject, "target": self.target, "thresholds": dict(self.thresholds),
                "dev": dict(self.dev)}

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> Confidence | None:
        """The run's policy, None for a run without one; a ValueError naming what is wrong with a damaged one."""
        raw = manifest.get(MANIFEST_KEY)
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise ValueError(f"{MANIFEST_KEY} must be an object, not {type(raw).__name__}")
        oos, t, reject = raw.get("oos_label"), raw.get("temperature", 1.0), raw.get("reject", "none")
        thresholds = raw.get("thresholds") or {}
        problems = []
        if oos is not None and (not isinstance(oos, str) or not oos):
            problems.append("oos_label must be a label name or null")
        if not isinstance(t, int | float) or isinstance(t, bool) or not 0 < t < 1000:
            problems.append(f"temperature must be a positive number, not {t!r}")
        if reject not in (*REJECT_METHODS, "none"):
            problems.append(f"reject must be one of msp, energy, none, not {reject!r}")
        if not isinstance(thresholds, dict) or any(m not in REJECT_METHODS or not isinstance(v, int | float)
                                                   for m, v in thresholds.items()):
            problems.append("thresholds must map msp / energy to numbers")
        elif reject != "none" and (reject not in thresholds or oos is None):
            problems.append(f"reject {reject} needs its threshold and an oos_label")
        if problems:
            raise ValueError(f"{MANIFEST_KEY}: " + "; ".join(problems))
        return cls(oos_label=oos, temperature=float(t), calibrated=bool(raw.get("calibrated", t != 1.0)),
                   reject=reject, target=float(raw.get("target", 0.95)),
                   thresholds={m: float(v) for m, v in thresholds.items()}, dev=dict(raw.get("dev") or {}))


def fit_confidence(logits: np.ndarray, refs: Sequence[str], labels: Sequence[str], *, oos_label: str | None,
                   reject: str, target: float, calibrate: bool) -> Confidence:
    """Fit the policy on dev ``logits`` (one row per example, columns in ``labels`` order) and the examples'
    reference labels: the temperature on the in-scope examples (``calibrate``), then with an ``oos_label`` a
    threshold per score at ``target``; ``reject`` auto applies the score with the higher out-of-scope F1 on dev
    (msp when the dev set has no out-of-scope examples to compare on)."""
    z = np.asarray(logits, dtype=np.float64)
    index = {label: i for i, label in enumerate(labels)}
    is_oos = np.array([r == oos_label for r in refs], dtype=bool)
    ins = np.array([r != oos_label and r in index for r in refs], dtype=bool)
    y = np.array([index[r] for r, keep in zip(refs, ins, strict=True) if keep], dtype=np.int64)
    temperature = fit_temperature(z[ins], y) if calibrate else 1.0
    known = np.array([label != oos_label for label in labels], dtype=bool)
    s = in_scope_scores(z, known, temperature)
    correct = s["best"][ins] == y
    dev: dict[str, Any] = {"examples": len(refs), "out_of_scope": int(is_oos.sum())}
    if calibrate:
        dev.update(nll_uncalibrated=negative_log_likelihood(z[ins], y), nll=negative_log_likelihood(z[ins], y,
                                                                                                    temperature),
                   ece_uncalibrated=expected_calibration_error(s["raw"][ins], correct),
                   ece=expected_calibration_error(s["msp"][ins], correct))
    thresholds: dict[str, float] = {}
    if oos_label is not None and ins.any():
        for m in REJECT_METHODS:
            fit = fit_threshold(s[m][ins], correct, s[m][is_oos], target=target, forced_in=s["head_oos"][ins],
                                forced_oos=s["head_oos"][is_oos])
            thresholds[m] = fit.threshold
            dev[m] = fit.to_json()
    chosen = reject
    if reject == "auto":
        chosen, dev["auto"] = _pick(dev, has_oos=bool(is_oos.any()))
    if chosen != "none" and chosen not in thresholds:
        raise ConfigError("eval_data: the dev set holds no in-scope examples to fit the reject option on",
                          hint="add examples of the known classes to --eval-data")
    return Confidence(oos_label=oos_label, temperature=temperature, calibrated=calibrate, reject=chosen,
                      target=target, thresholds=thresholds, dev=_rounded(dev))


def _pick(dev: Mapping[str, Any], *, has_oos: bool) -> tuple[str, str]:
    """``--reject auto``: the method and why."""
    if not has_oos:
        return "msp", "msp: the dev set has no out-of-scope examples to compare the scores on"
    f1 = {m: float(dev[m]["oos_f1"] or 0.0) for m in REJECT_METHODS if m in dev}
    best = max(REJECT_METHODS, key=lambda m: (f1.get(m, -1.0), m == "msp"))  # a tie goes to msp
    others = ", ".join(f"{f1[m]:.3f} for {m}" for m in REJECT_METHODS if m != best and m in f1)
    return best, f"{best}: out-of-scope F1 {f1[best]:.3f} on dev against {others}"


def _rounded(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in d.items()}
