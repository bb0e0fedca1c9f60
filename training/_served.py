"""The served fraud model, logged to MLflow as code (no pickles).

MLflow loads this file by path ("models from code"): it must stay self-contained, needing
only numpy, pandas, xgboost and mlflow, so a registered model loads anywhere without
fraudlab installed. Its artifacts are

- ``booster``: the XGBoost booster saved with MLflow's xgboost flavour (XGBoost's own
  UBJSON format);
- ``preprocessing``: a JSON file with the ordered feature list, the fixed categories of
  categorical features, the calibration and a version number;
- ``features``: the declarations of the model's inputs and the settings they read
  (``features.json``), so that the inputs can be recomputed from raw rows.

``mlflow.pyfunc.load_model("models:/NAME@champion").predict(frame)`` returns calibrated
fraud probabilities. ``unwrap_python_model()`` gives the :class:`FraudModel`, whose
``encode``, ``margin`` and ``booster`` explanations and reports use.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

PREPROCESSING_VERSION = 1
"""Bump when :func:`encode` changes meaning; a model refuses a newer spec than it knows."""


def encode(spec: dict, frame: pd.DataFrame) -> np.ndarray:
    """Model inputs as a float32 matrix in the model's feature order.

    Categorical features become the position of their value in the fixed category list
    (unknown or missing values become NaN, which XGBoost routes as missing).
    """
    missing = [c for c in spec["features"] if c not in frame.columns]
    if missing:
        raise ValueError(f"the input lacks the model's feature column(s) {missing[:10]}"
                         + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
    cats = spec.get("categories", {})
    out = np.empty((len(frame), len(spec["features"])), dtype=np.float32)
    for j, name in enumerate(spec["features"]):
        col = frame[name]
        if name in cats:
            codes = pd.Categorical(col.astype("object"), categories=cats[name]).codes
            out[:, j] = np.where(codes >= 0, codes, np.nan)
        else:
            out[:, j] = pd.to_numeric(col, errors="raise").to_numpy(dtype=np.float32, na_value=np.nan)
    return out


def calibrate(spec: dict, margin: np.ndarray) -> np.ndarray:
    """Calibrated probabilities from raw margins (log-odds)."""
    margin = np.asarray(margin, dtype=np.float64)
    if spec["method"] == "isotonic":
        return np.interp(margin, np.asarray(spec["x"], float), np.asarray(spec["y"], float))
    if spec["method"] == "sigmoid":
        return 1.0 / (1.0 + np.exp(-(spec["coef"] * margin + spec["intercept"])))
    if spec["method"] == "none":
        return 1.0 / (1.0 + np.exp(-margin))
    raise ValueError(f"unknown calibration method {spec['method']!r}")


class FraudModel(PythonModel):
    """Preprocessing, the XGBoost booster and the calibration, applied in that order."""

    declarations: dict | None = None  # features.json, when the model was logged with it

    def load_context(self, context) -> None:
        spec = json.loads(Path(context.artifacts["preprocessing"]).read_text())
        self.load(spec, mlflow.xgboost.load_model(context.artifacts["booster"]))
        path = context.artifacts.get("features")
        self.declarations = json.loads(Path(path).read_text()) if path else None

    def load(self, spec: dict, booster) -> FraudModel:
        """Attach a spec and a booster directly (training and tests)."""
        if spec.get("version", 0) > PREPROCESSING_VERSION:
            raise ValueError(f"preprocessing version {spec['version']} is newer than this "
                             f"code knows ({PREPROCESSING_VERSION}); upgrade fraudlab")
        self.spec, self.booster = spec, booster
        return self

    @property
    def features(self) -> list[str]:
        """The ordered model inputs."""
        return list(self.spec["features"])

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """See :func:`encode`."""
        return encode(self.spec, frame)

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw scores in log-odds, before calibration (what SHAP values add up to)."""
        return self.booster.inplace_predict(self.encode(frame), predict_type="margin")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        """Calibrated fraud probabilities, one per row."""
        return calibrate(self.spec["calibration"], self.margin(model_input))


mlflow.models.set_model(FraudModel())
