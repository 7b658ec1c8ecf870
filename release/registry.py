"""The model registry: what ML Metadata and the push destination know about each version.

No second database. A version is a numeric directory under the model base
path (the Pusher's push destination); what made it comes from the lineage
of its PushedModel artifact (`get_lineage_subgraph`, upstream: the Pusher's
execution, the Trainer's model with the drift verdict it was trained
under, the Evaluator's blessing, and from the blessing's producer the
evaluation); how it did in production from the monitor's recorded passes;
and its stage and approvals from the release decisions (`ledger`),
replayed. Replaying only the decisions made before a time answers "what
served production at T".

Stages: candidate (pushed, nothing decided), canary (takes a share of the
traffic), stable (serves production), archived (was canary or stable, and
is no longer; the previous stable stays loaded under the `rollback` label).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Tuple

from ml_metadata.proto import metadata_store_pb2

from foundation.metadata_store import artifacts_of_type, flag, pushed_model
from monitoring import metadata_record
from release import ledger

CANDIDATE, CANARY, STABLE, ARCHIVED = STAGES = ('candidate', 'canary', 'stable', 'archived')
# The label under which the previous stable version stays loaded, so a rollback is one label move.
ROLLBACK_LABEL = 'rollback'
_UPSTREAM = metadata_store_pb2.LineageSubgraphQueryOptions.Direction.UPSTREAM


@dataclasses.dataclass
class State:
    """Stages and labels after a prefix of the decisions."""

    stages: Dict[int, str] = dataclasses.field(default_factory=dict)
    # Versions promoted to stable, oldest first, minus those rolled back: [-1] serves, [-2] is the rollback.
    stable_line: List[int] = dataclasses.field(default_factory=list)
    canary: Optional[int] = None
    canary_percent: float = 0.0
    # The latest approve/reject decision per version.
    verdicts: Dict[int, ledger.Decision] = dataclasses.field(default_factory=dict)
    # When each version took its current stage.
    since: Dict[int, ledger.Decision] = dataclasses.field(default_factory=dict)
    # The serving labels the last decision that took effect left (what the serving config must say).
    labels: Dict[str, int] = dataclasses.field(default_factory=dict)
    # The content digest each version had when it was last promoted to stable (what a rollback may restore).
    promoted_digests: Dict[int, Optional[str]] = dataclasses.field(default_factory=dict)
    # Intents recorded and not (yet) confirmed: a command applying them, or one that died doing so.
    unconfirmed: List[ledger.Decision] = dataclasses.field(default_factory=list)

    @property
    def stable(self) -> Optional[int]:
        return self.stable_line[-1] if self.stable_line else None

    @property
    def rollback_target(self) -> Optional[int]:
        return self.stable_line[-2] if len(self.stable_line) > 1 else None

    def stage(self, version: int) -> str:
        return self.stages.get(version, CANDIDATE)

    def approved(self, version: int) -> Optional[ledger.Decision]:
        verdict = self.verdicts.get(version)
        return verdict if verdict is not None and verdict.action == ledger.APPROVE else None


def _outcomes(decisions: List[ledger.Decision]) -> Dict[int, ledger.Decision]:
    """Intent sequence -> the CONFIRM record of its outcome."""
    return {int(d.evidence.get('intent', 0)): d for d in decisions if d.action == ledger.CONFIRM}


def replay(decisions: List[ledger.Decision], until_micros: Optional[int] = None) -> State:
    """The state the decisions up to `until_micros` left. An intent counts from its own time once a CONFIRM
    record says it was applied (so a decision's printed time answers its own state); one that failed never
    served. `unconfirmed`: intents not confirmed by `until_micros` (taking effect then, or never confirmed)."""
    state = State()
    outcomes = _outcomes(decisions)
    for decision in decisions:
        if until_micros is not None and decision.at_micros > until_micros:
            break
        if decision.action == ledger.CONFIRM:
            continue
        if decision.intent:
            outcome = outcomes.get(decision.sequence)
            if outcome is None or (until_micros is not None and outcome.at_micros > until_micros):
                state.unconfirmed.append(decision)
            if outcome is None or outcome.evidence.get('outcome') != ledger.APPLIED:
                continue
        apply(state, decision)
    return state


def with_outcomes(decisions: List[ledger.Decision]) -> List[Tuple[ledger.Decision, Optional[ledger.Decision]]]:
    """The decisions as people read them: each with the record confirming it (None for one-record decisions
    and unconfirmed intents); CONFIRM records are part of the decision they confirm."""
    outcomes = _outcomes(decisions)
    return [(d, outcomes.get(d.sequence) if d.intent else None) for d in decisions if d.action != ledger.CONFIRM]


def outcome_text(decision: ledger.Decision, confirmation: Optional[ledger.Decision]) -> str:
    if not decision.intent:
        return 'recorded'
    if confirmation is None:
        return 'NOT CONFIRMED'
    error = confirmation.evidence.get('error')
    return f'{confirmation.evidence.get("outcome")} (#{confirmation.sequence})' + (f': {error}' if error else '')


def effects(decisions: List[ledger.Decision]) -> List[Tuple[int, Dict[str, int]]]:
    """(time, serving labels) each time the labels changed hands, as `replay` counts them."""
    outcomes = _outcomes(decisions)
    return [(d.at_micros, dict(d.labels)) for d in decisions if d.action != ledger.CONFIRM
            and (not d.intent or outcomes.get(d.sequence, d).evidence.get('outcome') == ledger.APPLIED)]


def apply(state: State, decision: ledger.Decision) -> None:
    if decision.action in (ledger.APPROVE, ledger.REJECT):
        state.verdicts[decision.model_version] = decision
    for version, (_, after) in decision.changes.items():
        state.stages[version] = after
        state.since[version] = decision
        if after == STABLE and decision.action == ledger.PROMOTE:
            state.stable_line.append(version)
            state.promoted_digests[version] = decision.evidence.get('content_sha256')
    if decision.action == ledger.ROLLBACK and len(state.stable_line) > 1:
        state.stable_line.pop()
    state.canary = decision.labels.get('canary')
    state.canary_percent = decision.canary_percent if state.canary is not None else 0.0
    state.labels = dict(decision.labels)


# A push destination on a bucket (Kubeflow) is read through TensorFlow's file systems; a local one
# without loading TensorFlow, which `models list` would otherwise wait seconds for.
def _isdir(path: str) -> bool:
    if '://' in path:
        import tensorflow as tf
        return tf.io.gfile.isdir(path)
    return os.path.isdir(path)


def _listdir(path: str) -> List[str]:
    if '://' in path:
        import tensorflow as tf
        return tf.io.gfile.listdir(path)
    return os.listdir(path)


def _exists(path: str) -> bool:
    if '://' in path:
        import tensorflow as tf
        return tf.io.gfile.exists(path)
    return os.path.exists(path)


def content_digest(directory: str) -> str:
    """SHA-256 over every file of a version directory (relative path and content, in path order):
    what an approval approved, so that a directory replaced since is noticed."""
    import hashlib
    if '://' in directory:
        import tensorflow as tf
        walk, read = tf.io.gfile.walk, lambda path: tf.io.gfile.GFile(path, 'rb').read()
    else:
        walk = os.walk

        def read(path):
            with open(path, 'rb') as f:
                return f.read()
    files = sorted(f'{root}/{name}'[len(directory):].lstrip('/') for root, _, names in walk(directory)
                   for name in names)
    digest = hashlib.sha256()
    for relative in files:
        digest.update(f'{relative}\0{hashlib.sha256(read(f"{directory}/{relative}")).hexdigest()}\n'.encode())
    return digest.hexdigest()


@dataclasses.dataclass
class Version:
    version: int
    directory: str
    on_disk: bool
    pushed: Optional[metadata_store_pb2.Artifact] = None
    run: Optional[str] = None
    blessed: Optional[bool] = None
    drift_verdict: Optional[str] = None
    drift_features: List[str] = dataclasses.field(default_factory=list)
    evaluation_uri: Optional[str] = None
    model_uri: Optional[str] = None
    # The latest monitoring pass over its traffic (monitoring.metadata_record.history), if any.
    live: Optional[Dict] = None

    @property
    def registered(self) -> bool:
        return self.pushed is not None

    @property
    def push_time_ms(self) -> Optional[int]:
        return self.pushed.create_time_since_epoch if self.pushed is not None else None

    @property
    def needs_drift_review(self) -> bool:
        """Drifted, or no verdict recorded (fail closed: nobody compared its data with what served)."""
        return self.drift_verdict in (None, 'drift')


class Registry:
    """Versions of the model at `model_base_path`, their lineage, and the release decisions."""

    def __init__(self, store, model_base_path: str):
        self.store = store
        self.model_base_path = model_base_path.rstrip('/')
        self._artifact_types = {t.id: t.name for t in store.get_artifact_types()}

    def decisions(self) -> List[ledger.Decision]:
        return ledger.read(self.store, self.model_base_path)

    def version_numbers(self) -> List[int]:
        """Versions on disk and versions ML Metadata says were pushed here."""
        found = set()
        if _isdir(self.model_base_path):
            found |= {int(name.rstrip('/')) for name in _listdir(self.model_base_path) if name.rstrip('/').isdigit()}
        prefix = self.model_base_path + '/'
        pushed = artifacts_of_type(self.store, 'PushedModel')
        for artifact in pushed:
            destination = artifact.custom_properties['pushed_destination'].string_value
            if flag(artifact.custom_properties, 'pushed') and destination.startswith(prefix):
                tail = destination[len(prefix):].rstrip('/')
                if tail.isdigit():
                    found.add(int(tail))
        return sorted(found)

    def version(self, number: int) -> Version:
        directory = f'{self.model_base_path}/{number}'
        result = Version(number, directory, _exists(f'{directory}/saved_model.pb'))
        pushed = pushed_model(self.store, self.model_base_path, number)
        if pushed is None or not flag(pushed.custom_properties, 'pushed'):
            return result
        result.pushed = pushed
        self._lineage(result)
        history = metadata_record.history(self.store, self.model_base_path, number)
        result.live = history[-1] if history else None
        return result

    def versions(self) -> List[Version]:
        return [self.version(v) for v in self.version_numbers()]

    def _lineage(self, result: Version) -> None:
        """The Pusher's inputs (model, blessing) from the lineage graph, then the blessing's evaluation."""
        options = metadata_store_pb2.LineageSubgraphQueryOptions(max_num_hops=2, direction=_UPSTREAM)
        options.starting_artifacts.filter_query = f'id = {result.pushed.id}'
        graph = self.store.get_lineage_subgraph(options)
        # A later run whose Pusher was cached records the same output and pushed nothing: the execution
        # that pushed is the one not cached, the earliest (pipeline.pushes.pushing_execution's rule).
        executions = {e.id: e for e in graph.executions}
        pushers = sorted({e.execution_id for e in graph.events
                          if e.type == metadata_store_pb2.Event.OUTPUT and e.artifact_id == result.pushed.id},
                         key=lambda i: (i not in executions
                                        or executions[i].last_known_state == metadata_store_pb2.Execution.CACHED, i))
        pusher_id = pushers[0] if pushers else None
        inputs = {e.path.steps[0].key: e.artifact_id for e in graph.events
                  if e.execution_id == pusher_id and e.type == metadata_store_pb2.Event.INPUT and e.path.steps}
        artifacts = {a.id: a for a in graph.artifacts}
        model, blessing = artifacts.get(inputs.get('model')), artifacts.get(inputs.get('model_blessing'))
        if model is not None:
            result.model_uri = model.uri
            verdict = model.custom_properties.get('drift_verdict')
            result.drift_verdict = verdict.string_value if verdict is not None else None
            features = model.custom_properties.get('drift_features')
            result.drift_features = [f for f in (features.string_value if features else '').split(',') if f]
        if blessing is not None:
            result.blessed = flag(blessing.custom_properties, 'blessed')
            producers = [e.execution_id for e in self.store.get_events_by_artifact_ids([blessing.id])
                         if e.type == metadata_store_pb2.Event.OUTPUT]
            if producers:
                outputs = {e.path.steps[0].key: e.artifact_id for e in
                           self.store.get_events_by_execution_ids(producers[:1])
                           if e.type == metadata_store_pb2.Event.OUTPUT and e.path.steps}
                if 'evaluation' in outputs:
                    result.evaluation_uri = self.store.get_artifacts_by_id([outputs['evaluation']])[0].uri
        if pusher_id is not None:
            runs = [c.name for c in self.store.get_contexts_by_execution(pusher_id) if c.type == 'pipeline_run']
            result.run = runs[0] if runs else None


def evaluation_metrics(version: Version) -> Dict[str, Dict[str, float]]:
    """Overall candidate and baseline metrics from the Evaluator's output ({} without one)."""
    if not version.evaluation_uri:
        return {}
    from components.artifact_contents import OVERALL, metrics_by_slice
    candidate, baseline = metrics_by_slice(version.evaluation_uri).get(OVERALL, ({}, {}))
    return {'candidate': candidate, 'baseline': baseline}
