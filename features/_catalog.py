"""The built-in feature set, and the functions that list, hash and select feature sets.

The built-in features are declarations in ``builtin.yaml``, loaded like any features file
(``_declarations.py``); nothing in the engine knows a feature by its name. A model's
feature set is the built-in one (``features.builtin``) plus the user's files
(``features.definitions``), narrowed by ``features.include`` / ``features.exclude``.

Window semantics: a window ``w`` at time ``t`` holds rows with ``t - w < time < t``; other
rows at exactly ``t`` are never "before" the transaction. ``include_current`` adds the
transaction being scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from ._config import FeaturesConfig
from ._declarations import (
    SETTINGS,
    DeclarationError,
    Feature,
    FeatureSet,
    check_features,
    features_hash,
    load_features,
    merge_sets,
)

BUILTIN_FILE = Path(__file__).with_name("builtin.yaml")
BUILTIN: FeatureSet = load_features(BUILTIN_FILE)
"""The built-in feature set, as loaded from ``builtin.yaml``."""

CATALOG: tuple[Feature, ...] = BUILTIN.features
"""Every built-in feature, in dataset column order."""


def as_feature_set(features: FeatureSet | Sequence[Feature] | None,
                   params: Sequence[str] = ()) -> FeatureSet:
    """A feature set from a set, a sequence of declarations, or None (the built-in set).

    A sequence of :class:`Feature` objects is checked here (``params``: the names of
    ``features.params`` its expressions may read); a ``FeatureSet`` was checked when it
    was loaded or resolved."""
    if features is None or features is BUILTIN:
        return BUILTIN
    if isinstance(features, FeatureSet):
        return features
    if tuple(features) == CATALOG:
        return BUILTIN
    fs = FeatureSet(tuple(features))
    check_features(fs, origin="<declarations given in Python>", settings=params)
    return fs


def feature_settings(config: FeaturesConfig | None = None) -> dict:
    """The settings declarations read (``small_amount``, ..., and ``features.params``):
    with the declarations, everything needed to recompute a model's inputs."""
    config = config or FeaturesConfig()
    return {**{k: getattr(config, k) for k in SETTINGS}, "params": dict(config.params)}


def resolve_features(config: FeaturesConfig | None = None) -> FeatureSet:
    """The feature set a configuration asks for.

    The built-in set (unless ``builtin`` is false), then every file of ``definitions`` in
    order, then ``include`` (names or groups; empty keeps all) and ``exclude``.

    Parameters
    ----------
    config : FeaturesConfig, optional

    Returns
    -------
    FeatureSet

    Raises
    ------
    DeclarationError
        A file that does not load, a name declared twice, an include or exclude that
        names no feature or group, or a feature whose expression reads one left out.
    """
    config = config or FeaturesConfig()
    params = tuple(config.params)
    sets = ([BUILTIN] if config.builtin else []) + [
        load_features(p, settings=params) for p in config.definitions]
    fs = merge_sets(sets)
    feats = fs.features
    for key in ("include", "exclude"):
        chosen = getattr(config, key)
        known = {f.name for f in feats} | {f.group for f in feats}
        unknown = [c for c in chosen if c not in known]
        if unknown:
            raise DeclarationError(f"features.{key}", None, None,
                                   f"{unknown[0]!r} is neither a feature nor a group of the "
                                   f"set; the groups are {sorted({f.group for f in feats})}")
    if config.include:
        feats = tuple(f for f in feats if f.name in config.include or f.group in config.include)
    if config.exclude:
        feats = tuple(f for f in feats
                      if f.name not in config.exclude and f.group not in config.exclude)
    if not feats:
        raise DeclarationError("features", None, None, "the feature set is empty")
    out = FeatureSet(feats, fs.columns)
    check_features(out, origin="features.include/exclude", settings=params)
    return out


def feature_names(catalog: FeatureSet | Sequence[Feature] = CATALOG) -> list[str]:
    """The model's input columns, in order."""
    return as_feature_set(catalog).names()


def catalog_version(catalog: FeatureSet | Sequence[Feature] = CATALOG,
                    config: FeaturesConfig | None = None) -> str:
    """A short hash of the declarations and the settings they read, logged with every
    dataset and model (the hash of a model's ``features.json``)."""
    return features_hash(as_feature_set(catalog), feature_settings(config))


def catalog_frame(catalog: FeatureSet | Sequence[Feature] = CATALOG):
    """The declarations as a DataFrame (one row per feature), for printing and docs."""
    import pandas as pd

    return pd.DataFrame([asdict(f) for f in as_feature_set(catalog).features])


def _rule(f: Feature) -> str:
    detail = f.expr or f.where
    of = "+".join(f.of) if isinstance(f.of, tuple) else f.of
    text = f.agg + (f" of {of}" if of and f.agg != "expr" else "")
    return text + (f" (`{detail}`)" if detail else "")


def catalog_markdown(catalog: FeatureSet | Sequence[Feature] = CATALOG) -> str:
    """docs/features.md: the declarations grouped, for reviewers and data scientists."""
    fs = as_feature_set(catalog)
    lines = ["# Feature catalog", "",
             f"Generated from `features/builtin.yaml` (catalog version `{catalog_version(fs)}`"
             " with the default settings) by `fraudlab features list --markdown`. Do not edit"
             " by hand. How to declare features of your own: "
             "[declaring features](declaring-features.md).", "",
             "A window `w` at time `t` holds rows with `t - w < time < t`; rows at exactly `t`"
             " are not before the transaction. *Includes current* says whether the transaction"
             " being scored counts in its own aggregate.", ""]
    group = None
    for f in fs.features:
        if f.group != group:
            group = f.group
            lines += ["", f"## {group.replace('_', ' ')}", "",
                      "| feature | description | entity | source | window | aggregation | "
                      "includes current | unit | may be null |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines.append(
            f"| `{f.name}` | {f.description} | {f.entity} | {f.source} | {f.window or 'all'} "
            f"| {_rule(f)} | "
            f"{'yes' if f.include_current else 'no'} | {f.unit} | {'yes' if f.nullable else 'no'} |")
    return "\n".join(lines) + "\n"
