"""Alerts: what the monitor raises about a served version, typed, with their kinds defined once.

An alert travels as a JSON object (the monitor's stdout lines, its webhook, the findings it records in
ML Metadata): `{"alert": kind, "model_version": N, ...details}`. `Alert` is that object typed: the
monitor builds alerts with it, and the scheduler, the registry and the provenance pages read recorded
ones back through `Alert.from_record`, so a kind is spelled in one place.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Tuple

# A feature's serving distribution far from its training data (skew) or from the window before (drift).
SKEW = 'skew'
DRIFT = 'drift'
# The distribution of the model's own predictions moved from the window before.
PREDICTION_DRIFT = 'prediction_drift'
# A live metric (AUC, accuracy on labelled traffic) below its minimum.
LIVE_METRIC = 'live_metric'
# More requests flagged as outliers than allowed.
OUTLIER_RATE = 'outlier_rate'
# A version answered traffic but carries nothing to judge it by (an export of an older pipeline).
UNMONITORED = 'unmonitored'
# A caller probing or abusing the model (monitoring/callers.py); its `caller` detail names it.
ABUSE = 'abuse'
KINDS = (SKEW, DRIFT, PREDICTION_DRIFT, LIVE_METRIC, OUTLIER_RATE, UNMONITORED, ABUSE)
# Kinds that name features (their `features` detail).
FEATURE_KINDS = (SKEW, DRIFT)
# What retraining can answer: an outlier-rate alert is about the requests, not the model, an
# unmonitored version about its export, and abuse about a caller.
RETRAIN_KINDS = (SKEW, DRIFT, PREDICTION_DRIFT, LIVE_METRIC)

# Before labels arrive, and what labels then show (monitoring/performance_estimation.py, label_drift.py,
# attribution_drift.py):
# - the accuracy or AUC estimated for the window's traffic from the version's calibration below its minimum;
ESTIMATED_PERFORMANCE = 'estimated_performance'
# - the label rate of the window's feedback far from the eval split's the version carries;
LABEL_DRIFT = 'label_drift'
# - realised performance below what the estimate allowed (or the reference) while the inputs did not drift;
CONCEPT_DRIFT = 'concept_drift'
# - the model leaning on features (its `features` detail) unlike in training.
ATTRIBUTION_DRIFT = 'attribution_drift'
KINDS += (ESTIMATED_PERFORMANCE, LABEL_DRIFT, CONCEPT_DRIFT, ATTRIBUTION_DRIFT)
# A drop the estimate foresees, labels that moved, a concept that moved: a model trained on recent
# traffic answers them. Attribution drift explains other findings (the inputs drifted, or the estimate
# fell) and retrains through them.
RETRAIN_KINDS += (ESTIMATED_PERFORMANCE, LABEL_DRIFT, CONCEPT_DRIFT)

_KIND_KEY, _VERSION_KEY = 'alert', 'model_version'
# A check that could not run (no traffic in the window before, no training statistics, too few values of a
# feature): not an alert (it raises nothing, triggers nothing and leaves the exit code alone, as the monitor's
# other warnings do), but it travels beside the alerts, so that a check never silently does not happen.
NOT_CHECKED = 'not_checked'


@dataclasses.dataclass(frozen=True)
class Alert:
    kind: str
    model_version: Optional[int] = None
    # What was measured, by kind: features and distances, metric/value/ci95/minimum, outlier_rate/allowed...
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f'unknown alert kind {self.kind!r}; kinds are {", ".join(KINDS)}')

    @property
    def features(self) -> List[str]:
        return list(self.details.get('features') or [])

    def record(self) -> Dict[str, Any]:
        """The alert as the JSON object it travels and is recorded as."""
        return {_KIND_KEY: self.kind, _VERSION_KEY: self.model_version, **self.details}

    @classmethod
    def from_record(cls, found) -> 'Alert':
        """A recorded alert read back. Whatever an older or foreign writer left (a bare string, an unknown
        kind) still reads: as an alert of that kind text, with no details, rather than not at all."""
        if not isinstance(found, Mapping):
            return _Foreign(str(found), bare=True)
        kind = str(found.get(_KIND_KEY, 'alert'))
        details = {k: v for k, v in found.items() if k not in (_KIND_KEY, _VERSION_KEY)}
        version = found.get(_VERSION_KEY)
        if kind not in KINDS:
            return _Foreign(kind, version, details)
        return cls(kind, version, details)

    def text(self) -> str:
        """One line: `drift (version 7): features=['fare'], distances={...}`."""
        detail = ', '.join(f'{k}={v}' for k, v in self.details.items())
        version = '?' if self.model_version is None else self.model_version
        return f'{self.kind} (version {version}): {detail}'


@dataclasses.dataclass(frozen=True)
class _Foreign(Alert):
    """A recorded alert of a kind this code does not know: shown, never raised."""

    # Recorded as a bare string, not an object: shown as that string.
    bare: bool = False

    def __post_init__(self):
        pass

    def text(self) -> str:
        return self.kind if self.bare else super().text()


@dataclasses.dataclass(frozen=True)
class NotChecked:
    """A check (SKEW, DRIFT, PREDICTION_DRIFT) that could not run for a version, and why; `features`: the ones
    it could not run for, if not all. Travels as `{"not_checked": check, "model_version": N, "reason": ...}`."""

    check: str
    model_version: Optional[int]
    reason: str
    features: Tuple[str, ...] = ()

    def record(self) -> Dict[str, Any]:
        found = {NOT_CHECKED: self.check, _VERSION_KEY: self.model_version, 'reason': self.reason}
        if self.features:
            found['features'] = list(self.features)
        return found

    @classmethod
    def from_record(cls, found: Mapping[str, Any]) -> 'NotChecked':
        return cls(str(found.get(NOT_CHECKED)), found.get(_VERSION_KEY), str(found.get('reason', '')),
                   tuple(found.get('features') or ()))

    def text(self) -> str:
        """One line: `drift not checked: no traffic in the previous window`."""
        features = f' for {", ".join(self.features)}' if self.features else ''
        return f'{self.check.replace("_", " ")} not checked{features}: {self.reason}'


def alert_text(record) -> str:
    """A recorded alert as one line."""
    return Alert.from_record(record).text()


def read_all(records) -> List[Alert]:
    return [Alert.from_record(r) for r in records or []]


def kinds_and_features(records) -> Tuple[List[str], List[str]]:
    """The sorted kinds among recorded alerts, and the features their skew and drift alerts name."""
    found = read_all(records)
    return (sorted({a.kind for a in found}),
            sorted({f for a in found if a.kind in FEATURE_KINDS for f in a.features}))
