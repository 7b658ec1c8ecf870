"""Tunings as records in a known directory, and trials as plain values (no TFX).

A tuning writes one JSON record per run it tuned in: the best values, the
validation AUC they scored, the trials, and the URI of the HyperParameters
artifact that carries them. Later runs that do not tune read the newest record
(names sort by time), skipping any whose artifact ML Metadata does not know
when a store is given (a run killed between writing the record and publishing
its artifact). The directory is shared by every runner (a bucket on Kubeflow),
as the push destination is.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from typing import Callable, Dict, List, Mapping, Optional

import tensorflow as tf

# Where the Trainer's hyperparameters came from (the HyperParameters artifact's `source`).
TUNED, PREVIOUS, DEFAULTS = 'tuned', 'previous tuning', 'defaults'
SOURCES = (TUNED, PREVIOUS, DEFAULTS)
SUFFIX = '.json'


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trial: its values (the search space's encoding), best validation AUC, status and time."""

    trial_id: str
    values: Mapping[str, object]
    score: Optional[float]
    status: str
    seconds: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class Record:
    """One tuning: what it found, how, and the artifact that carries it."""

    values: Mapping[str, object]
    score: Optional[float]
    objective: str
    trials: List[Trial]
    artifact_uri: str
    tuned_at: float  # seconds since the epoch
    seconds: float
    max_trials: int
    max_seconds: float
    trial_steps: int
    # Where the record was read from (set by `records`; not written).
    path: str = ''

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        del data['path']
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, path: str = '') -> 'Record':
        data = json.loads(text)
        data['trials'] = [Trial(**t) for t in data.get('trials', [])]
        return cls(path=path, **data)


def trials_json(trials: List[Trial]) -> str:
    return json.dumps([dataclasses.asdict(t) for t in trials], sort_keys=True)


def trials_from_json(text: Optional[str]) -> List[Trial]:
    return [Trial(**t) for t in json.loads(text)] if text else []


def write(directory: str, record: Record) -> str:
    """Writes `record` under a name that sorts by time, through a temporary name and a rename
    (tf.io.gfile's: the directory may be a bucket); returns its path."""
    tf.io.gfile.makedirs(directory)
    path = os.path.join(directory, f'{int(record.tuned_at * 1e6):020d}-{uuid.uuid4().hex[:8]}{SUFFIX}')
    temporary = f'{path}.partial'
    with tf.io.gfile.GFile(temporary, 'w') as f:
        f.write(record.to_json())
    tf.io.gfile.rename(temporary, path, overwrite=True)
    return path


def records(directory: str) -> List[Record]:
    """Every record in `directory`, newest first (none if it does not exist); an unreadable one is skipped."""
    if not directory or not tf.io.gfile.isdir(directory):
        return []
    found = []
    for name in sorted(tf.io.gfile.listdir(directory), reverse=True):
        if not name.endswith(SUFFIX):
            continue
        path = os.path.join(directory, name)
        try:
            with tf.io.gfile.GFile(path) as f:
                found.append(Record.from_json(f.read(), path))
        except (ValueError, TypeError, KeyError):
            continue
    return found


def latest(directory: str, is_known: Optional[Callable[[str], bool]] = None,
           log: Callable[..., None] = lambda *args: None) -> Optional[Record]:
    """The newest record whose artifact `is_known` (an ML Metadata lookup by URI; None: every one is)."""
    for record in records(directory):
        if is_known is None or is_known(record.artifact_uri):
            return record
        log('Last tuning: skipping %s, ML Metadata has no artifact at %s', record.path, record.artifact_uri)
    return None


def new_record(values: Mapping[str, object], trials: List[Trial], objective: str, artifact_uri: str,
               started: float, max_trials: int, max_seconds: float, trial_steps: int) -> Record:
    scored = [t.score for t in trials if t.score is not None]
    return Record(values=dict(values), score=max(scored) if scored else None, objective=objective,
                  trials=list(trials), artifact_uri=artifact_uri, tuned_at=time.time(),
                  seconds=round(time.time() - started, 3), max_trials=max_trials, max_seconds=max_seconds,
                  trial_steps=trial_steps)


def summary(values: Mapping[str, object]) -> Dict[str, object]:
    return {k: values[k] for k in sorted(values)}
