"""What changed between a champion's training period and the newest window: drift of the
population, of the scores and of the frauds, attribution shift, and the patterns among
the frauds the champion missed."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

import numpy as np
import pandas as pd

from fraudlab.features import LABEL, dataset_features

from ._drift import attribution_shift, feature_drift, missed_fraud_patterns, psi
from ._explain import contributions
from ._report import Scorer


@dataclass
class PeriodChanges:
    """Drift and new patterns of one period (see :func:`compare_periods`)."""

    drift: pd.DataFrame
    fraud_drift: pd.DataFrame
    score_psi: float
    fraud_rate: dict
    attribution: pd.DataFrame
    patterns: list
    caught: pd.DataFrame
    missed: int

    def summary(self) -> dict:
        """Plain-JSON figures for logs and the decision record."""
        def major(frame: pd.DataFrame) -> list:
            return frame.loc[frame["verdict"] == "major", "feature"].tolist()

        return {"score_psi": self.score_psi, "fraud_rate": self.fraud_rate,
                "major_features": major(self.drift),
                "fraud_major_features": major(self.fraud_drift),
                "top": self.drift.head(10)[["feature", "psi"]].to_dict("records"),
                "fraud_top": self.fraud_drift.head(10)[["feature", "psi"]].to_dict("records"),
                "missed_frauds": self.missed,
                "challenger_catches_missed": int(self.caught["frauds"].sum()) if len(self.caught) else 0}

    def to_html(self) -> str:
        """The report's "What changed" section (every value escaped)."""
        fmt3 = {"index": False, "border": 0, "float_format": lambda v: f"{v:.3f}"}
        parts = [f"<p>Score distribution shift (PSI of the reference model's scores): "
                 f"<b>{self.score_psi:.3f}</b>. Fraud rate: {self.fraud_rate['reference']:.3%} in "
                 f"the champion's training period, {self.fraud_rate['current']:.3%} in the newest "
                 "matured window.</p>",
                 "<h3>Most drifted features (PSI against the champion's training period)</h3>",
                 self.drift.head(10).to_html(**fmt3),
                 "<p>Features that count history (ages, z-scores, first uses) drift as the data "
                 "grow older; read them next to the drift among frauds below.</p>",
                 "<h3>Drift among the frauds (champion's training period against the newest "
                 "matured window)</h3>",
                 self.fraud_drift.head(10).to_html(**fmt3),
                 "<h3>Attribution shift (mean |SHAP| of the reference model, then and now)</h3>",
                 self.attribution.head(10).to_html(index=False, border=0,
                                                   float_format=lambda v: f"{v:.4f}"),
                 "<h3>Emerging patterns among the frauds the champion missed</h3>"]
        if self.patterns:
            items = []
            for p in self.patterns:
                channels = ", ".join(f"{k} {v:.0%}" for k, v in p["channels"].items())
                types = ", ".join(f"{k} {v:.0%}" for k, v in p["fraud_types"].items()) or "n/a"
                reasons = "; ".join(r["description"] for r in p["reasons"])
                items.append(f"<li><b>{p['size']} frauds</b>, amount {p['fraud_amount']:,.0f}; "
                             f"channels {escape(channels)}; labelled {escape(types)}. "
                             f"Driven by: {escape(reasons)}</li>")
            parts.append("<ul>" + "".join(items) + "</ul>")
        else:
            parts.append("<p>No matured fraud of this window was missed by a champion.</p>")
        parts += ["<h3>What the challenger catches that the champion did not</h3>",
                  self.caught.to_html(index=False, border=0,
                                      float_format=lambda v: f"{v:,.2f}") if len(self.caught)
                  else "<p>Nothing new.</p>"]
        return "\n".join(parts)


def compare_periods(reference: pd.DataFrame, current: pd.DataFrame, window: pd.DataFrame, *,
                    model: Scorer, challenger: Scorer, champion_tiers: np.ndarray | None,
                    challenger_tiers: np.ndarray, sample: int = 50_000, n_attributions: int = 3000,
                    random_state: int = 0) -> PeriodChanges:
    """Measure what changed since a model's training period.

    Parameters
    ----------
    reference : DataFrame
        Labeled-dataset rows of the champion's training period.
    current : DataFrame
        The newest rows (labels not needed).
    window : DataFrame
        The newest matured, labelled window the champion and challenger were compared on.
    model : Scorer
        The model whose scores and attributions are compared (the champion, or the
        challenger when there is none).
    challenger : Scorer
        Explains the missed frauds (it was trained on the newest data).
    champion_tiers, challenger_tiers : ndarray of str
        Each model's tier ("block", "review", "pass") for the rows of ``window``; None for
        the champion when there is none (then nothing counts as missed).
    """
    # A dataset whose legitimate rows were sampled for training carries their weights; a
    # row kept with probability weight / max weight makes a uniform sample of the population.
    wcol = "sample_weight"

    def draw(frame: pd.DataFrame) -> pd.DataFrame:
        if wcol in frame.columns and len(frame):
            w = frame[wcol].to_numpy(float)
            keep = np.random.default_rng(random_state).random(len(w)) < w / w.max()
            frame = frame[keep]
        return frame.sample(min(len(frame), sample), random_state=random_state)

    ref, cur = draw(reference), draw(current)
    feats = model.features
    drift = feature_drift(ref, cur, feats)
    score_psi = psi(model.predict(None, ref), model.predict(None, cur))
    mature = reference[reference["is_mature"].to_numpy()]
    # A new fraud pattern is a small share of all payments and barely moves the population;
    # it moves the frauds' own feature distributions.
    old_frauds, new_frauds = mature[mature[LABEL] == 1], window[window[LABEL] == 1]
    fraud_drift = (feature_drift(old_frauds, new_frauds, feats)
                   if len(old_frauds) and len(new_frauds) else drift.iloc[:0])
    rates = {"reference": (float(np.average(mature[LABEL], weights=mature[wcol])
                                 if wcol in mature.columns else mature[LABEL].mean())
                           if len(mature) else float("nan")),
             "current": float(window[LABEL].mean()) if len(window) else float("nan")}
    n = min(len(ref), len(cur), n_attributions)
    attribution = attribution_shift(contributions(model.booster, model.encode(ref.head(n)), feats),
                                    contributions(model.booster, model.encode(cur.head(n)), feats))
    y = window[LABEL].to_numpy() == 1
    missed = y & (champion_tiers == "pass") if champion_tiers is not None else np.zeros(len(y), bool)
    miss = window[missed].reset_index(drop=True)
    patterns = (missed_fraud_patterns(
        contributions(challenger.booster, challenger.encode(miss), challenger.features),
        miss[[c for c in ("amount", "channel", "fraud_type") if c in miss]],
        catalog=dataset_features(window).features) if len(miss) else [])
    now_caught = missed & (challenger_tiers != "pass")
    caught = (window[now_caught].assign(fraud_type=lambda d: d["fraud_type"].fillna("unknown"))
              .groupby("fraud_type").agg(frauds=("tx_id", "size"), amount=("amount", "sum"))
              .reset_index())
    return PeriodChanges(drift=drift, fraud_drift=fraud_drift, score_psi=score_psi,
                         fraud_rate=rates, attribution=attribution, patterns=patterns,
                         caught=caught, missed=int(missed.sum()))
