"""Score one payment at a time with a registered model, without MLflow on the hot path.

MLflow is used once, by whoever loads the model version (``fraudlab.training.load_scorer``
finds and verifies it); scoring is the incremental features
(:class:`fraudlab.features.OnlineFeatures` built from the model's own ``features.json``),
the booster's trees walked for one row (:class:`~fraudlab.serving._forest.Forest`, checked
against XGBoost's own margins when loaded; ``inplace_predict`` where it cannot be used),
the calibration and the tier thresholds, all held in memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Score:
    """One payment's score: calibrated fraud probability and tier (block, review, pass)."""

    tx_id: str
    probability: float
    tier: str
    features: dict
    inputs: np.ndarray
    """The model's inputs for this payment (float32, in the model's feature order)."""


class Scorer:
    """A registered model and its incremental features, for one transaction at a time.

    Parameters
    ----------
    model : object
        The served model (``fraudlab.training.load_registered`` gives one): its ``spec``
        (features, categories, calibration, tiers), ``booster`` and ``declarations``
        (``features.json``).
    online : OnlineFeatures, optional
        The executor whose state the scorer reads and feeds; default a fresh one built
        from the model's ``features.json``.
    """

    def __init__(self, model, online=None):
        from fraudlab.features import OnlineFeatures

        if online is None:
            if not model.declarations:
                raise ValueError("the model carries no features.json: it cannot compute "
                                 "its own inputs; train it again with this fraudlab")
            online = OnlineFeatures(model.declarations)
        self.model, self.online = model, online
        # One row at a time: a second OpenMP thread only adds its wake-up to each call,
        # and when the other core is busy (the HTTP server, a neighbour) that wait is the
        # tail (one-row predict p99 25.9 ms with 2 threads beside a busy core, 2.4 ms with
        # 1). The service's own copy, so the caller's booster keeps its settings.
        self.booster = model.booster.copy()
        self.booster.set_param({"nthread": 1})
        from ._forest import Forest, UnsupportedForest

        try:
            self.forest: Forest | None = Forest(self.booster)
        except UnsupportedForest as exc:
            import logging

            logging.getLogger("fraudlab.serving").warning(
                "scoring with XGBoost's inplace_predict (slower on one row): %s", exc)
            self.forest = None
        spec = model.spec
        self.features = list(spec["features"])
        self._codes = {name: {v: float(i) for i, v in enumerate(cats)}
                       for name, cats in spec.get("categories", {}).items()}
        cal = spec["calibration"]
        self._cal = cal
        if cal["method"] == "isotonic":
            self._x = np.asarray(cal["x"], float)
            self._y = np.asarray(cal["y"], float)
        from fraudlab.evaluation import tier_threshold

        tiers = spec.get("tiers", {})
        self._block = tier_threshold(tiers.get("block"))
        self._review = tier_threshold(tiers.get("review"))
        self._coded = [(j, self._codes[name]) for j, name in enumerate(self.features)
                       if name in self._codes]

    def encode(self, features: Mapping) -> np.ndarray:
        """One row of model inputs (float32, a new array of shape ``(1, n)``), as
        :func:`encode` builds them for a frame."""
        values = [features[name] for name in self.features]
        for j, codes in self._coded:
            v = values[j]
            values[j] = math.nan if v is None else codes.get(v, math.nan)
        return np.array([values], dtype=np.float32)

    def margin(self, row: np.ndarray) -> float:
        """The raw score (log-odds) of one encoded row (``encode``'s output)."""
        if self.forest is not None:
            return self.forest.margin(row[0])
        return float(self.booster.inplace_predict(row, predict_type="margin")[0])

    def probability(self, margin: float) -> float:
        """The calibrated probability of a raw margin."""
        cal = self._cal
        if cal["method"] == "isotonic":
            return float(np.interp(margin, self._x, self._y))
        if cal["method"] == "sigmoid":
            return 1.0 / (1.0 + math.exp(-(cal["coef"] * margin + cal["intercept"])))
        return 1.0 / (1.0 + math.exp(-margin))

    def tier(self, probability: float) -> str:
        if probability >= self._block:
            return "block"
        return "review" if probability >= self._review else "pass"

    def score(self, tx: Mapping) -> Score:
        """Features, model, calibration and tier of one transaction, which then enters the
        state (see :meth:`fraudlab.features.OnlineFeatures.score`)."""
        feats = self.online.score(tx)
        row = self.encode(feats)
        p = self.probability(self.margin(row))
        return Score(str(tx["tx_id"]), p, self.tier(p), feats, row[0])

    def update(self, table: str, row: Mapping) -> None:
        """Take a non-scored row (event, label, listing, account) into the state."""
        self.online.update(table, row)


