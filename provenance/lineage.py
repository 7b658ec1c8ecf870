"""Why a version is serving and what made it, from ML Metadata's lineage queries.

For a pushed version: its PushedModel artifact, then
- upstream (`get_lineage_subgraph`, direction UPSTREAM from the PushedModel):
  every execution and artifact that made it, across runs where a component
  was cached: this is the graph the page draws;
- the run whose Pusher pushed it (`run_record`, itself one lineage query):
  the trigger, code version, parameters, data span, statistics, anomalies,
  schema, Transform, Trainer, evaluation and blessing;
- downstream (`get_lineage_subgraph`, DOWNSTREAM): every monitoring pass
  over its traffic and every release decision that moved it;
- the release history (`release.ledger`, verified): its stage history and
  approvals.

The schema is compared with the one the previous pushed version was
validated against, so "the schema changed" shows up on the version it
changed for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Dict, List, Optional

from ml_metadata.proto import metadata_store_pb2

from foundation import alerts as alert_records
from foundation.metadata_store import RUN_CONTEXT_TYPES, flag, number, pushed_model, text, value
from monitoring import metadata_record
from components import code_version, slice_gates
from provenance import run_record
from reports.formatting import metric_text
from release import ledger, policy as policy_lib, registry as registry_lib

_Direction = metadata_store_pb2.LineageSubgraphQueryOptions.Direction
# Deep enough for the longest path in the DAG (ExampleGen to Pusher is 8 executions, 16 hops).
MAX_HOPS = 30


class NotPushed(ValueError):
    """No PushedModel in ML Metadata for the version: nothing to trace."""


@dataclasses.dataclass
class Schema:
    uri: str
    file: Optional[str]
    sha256: Optional[str]
    previous_version: Optional[int] = None
    # None: no previous version to compare with.
    changed: Optional[bool] = None
    differences: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Lineage:
    model_base_path: str
    version: registry_lib.Version
    pushed: metadata_store_pb2.Artifact
    run: Optional[run_record.RunRecord]
    # What made it: the upstream lineage subgraph of the PushedModel.
    upstream: metadata_store_pb2.LineageGraph
    # What happened to it since: monitoring passes and release decisions that consumed it.
    downstream: metadata_store_pb2.LineageGraph
    stage: str
    decisions: List[ledger.Decision]
    history_problems: List[str]
    live: List[Dict]
    schema: Optional[Schema]

    @property
    def code(self) -> Optional[code_version.CodeVersion]:
        """The code that trained the model (stamped on it by the Trainer), else the run's."""
        model = self.made_by('Trainer')
        found = code_version.read(model.output('model').custom_properties) if model and model.output('model') \
            else None
        return found or (self.run.code if self.run else None)

    def made_by(self, node_id: str) -> Optional[run_record.Step]:
        """A component's execution in the producing run (its cached execution if it was cached)."""
        return self.run.step(node_id) if self.run else None

    @property
    def approvals(self) -> List[ledger.Decision]:
        return [d for d in self.decisions if d.action in (ledger.APPROVE, ledger.REJECT)
                and d.model_version == self.version.version]

    @property
    def stage_history(self) -> List[ledger.Decision]:
        return [d for d in self.decisions if self.version.version in d.changes]

    def evaluation(self) -> Dict:
        """Thresholds the Evaluator applied, the baseline it compared with, metrics per slice."""
        step = self.made_by('Evaluator')
        if step is None:
            return {}
        baseline = self.made_by('LatestBlessedModel')
        baseline_model = baseline.output('baseline') if baseline else None
        baseline_version = (baseline_model.custom_properties['pushed_version'].string_value
                            if baseline_model is not None and 'pushed_version' in baseline_model.custom_properties
                            else None)
        slices = self.run.metrics()
        # The gates as the Evaluator applied and recorded them (components/slice_gates.py; none before them).
        evaluation, blessing = step.output('evaluation'), step.output('blessing')
        recorded = evaluation.custom_properties if evaluation is not None else {}
        return {
            'thresholds': {k: step.property(k) for k in ('min_auc', 'min_accuracy', 'max_auc_drop')},
            'baseline_version': int(baseline_version) if baseline_version else None,
            'blessed': self.run.blessed,
            'slices': {name: {'candidate': c, 'baseline': b} for name, (c, b) in slices.items()},
            'gates': [g.to_dict() for g in slice_gates.load_gates(text(recorded, slice_gates.GATES_PROPERTY))],
            'gated_slices': [dataclasses.asdict(c) for c in slice_gates.load_counts(
                text(recorded, slice_gates.SLICES_PROPERTY))],
            'min_slice_class_examples': number(recorded, slice_gates.MIN_SLICE_CLASS_EXAMPLES),
            'refusal': (text(blessing.custom_properties, slice_gates.REASON_PROPERTY) or None) if blessing else None,
        }

    def infra_validation(self) -> Dict:
        """The infra validation's outcome: blessed, the reason, the figures, every check (its recorded report)."""
        step = self.made_by('InfraValidation')
        blessing = step.output('blessing') if step else None
        if blessing is None:
            return {}
        recorded = {}
        if blessing.uri:
            text = _read(os.path.join(blessing.uri, 'infra_validation.json'))
            recorded = json.loads(text) if text else {}
        return {'blessed': bool(_recorded(blessing, 'blessed')), 'reason': _recorded(blessing, 'reason'),
                'load_seconds': recorded.get('load_seconds'), 'memory_mb': recorded.get('memory_mb'),
                'latency_ms': recorded.get('latency_ms', {}), 'limits': recorded.get('limits', {}),
                'checks': recorded.get('checks', [])}

    def anomalies(self) -> Dict[str, List[str]]:
        """ExampleValidator's findings per split, as readable lines ({} if it did not run)."""
        step = self.made_by('ExampleValidator')
        artifact = step.output('anomalies') if step else None
        if artifact is None:
            return {}
        from components.anomalies_gate.executor import read_split_anomalies
        from components.anomalies_gate.gate import describe
        found = {}
        for split in ('train', 'eval'):
            try:
                found[split] = describe(read_split_anomalies(artifact.uri, split))
            except Exception as e:  # a file removed since: say so, do not fail the whole answer
                found[split] = [f'(cannot read: {type(e).__name__})']
        return found

    def statistics_summary(self, split: str = 'train') -> List[Dict]:
        """The split's statistics, a dict of artifact_contents.STATISTICS_COLUMNS per feature."""
        stats = self.run.statistics(split) if self.run else None
        if stats is None:
            return []
        from components.artifact_contents import STATISTICS_COLUMNS, statistics_rows  # not at the top: TensorFlow-heavy
        return [dict(zip(STATISTICS_COLUMNS, row)) for row in statistics_rows(stats)]

    def to_dict(self) -> Dict:
        """Everything above as JSON-ready data (what `lineage --json` prints)."""
        version, run = self.version, self.run
        trainer, transform = self.made_by('Trainer'), self.made_by('Transform')
        model = trainer.output('model') if trainer else None
        code = self.code
        params = run.parameters() if run else {}
        return {
            'version': version.version,
            'directory': version.directory,
            'on_disk': version.on_disk,
            'stage': self.stage,
            'pushed': {'at': ledger.format_time(self.pushed.create_time_since_epoch * 1000),
                       'destination': self.pushed.custom_properties['pushed_destination'].string_value,
                       'artifact_id': self.pushed.id},
            'stage_history': [_decision(d, version.version) for d in self.stage_history],
            'approvals': [_decision(d, version.version) for d in self.approvals],
            'history_problems': self.history_problems,
            'run': None if run is None else {
                'name': run.name, 'outcome': run.outcome, 'started': ledger.format_time(run.started_ms * 1000),
                'seconds': run.seconds,
                'trigger': {'kind': run.trigger.kind, 'detail': run.trigger.detail} if run.trigger else None,
                'code': dataclasses.asdict(run.code) if run.code else None,
                'parameters': params},
            'code': dataclasses.asdict(code) if code else None,
            'data': None if run is None else {
                'span': run.span, 'data_root': params.get('data_root'), 'files': run.span_paths,
                'input_fingerprint': run.input_fingerprint,
                'examples_uri': run.examples.uri if run.examples is not None else None,
                'rows': run.rows(), 'statistics_uri': run.statistics_uri,
                'statistics': self.statistics_summary(),
                'anomalies': self.anomalies()},
            'schema': dataclasses.asdict(self.schema) if self.schema else None,
            'transform': None if transform is None else {
                'preprocessing_fn': transform.property('preprocessing_fn'), 'state': transform.state,
                'transform_graph': _uri(transform.output('transform_graph'))},
            'training': None if trainer is None else {
                'run_fn': trainer.property('run_fn'), 'state': trainer.state,
                # The steps taken, as the model records them; the parameter may be 0 (from the epochs).
                'train_steps': _recorded(model, 'train_steps') or trainer.property('train_steps'),
                'train_epochs': _recorded(model, 'train_epochs'), 'train_rows': _recorded(model, 'train_rows'),
                'steps_taken': _recorded(model, 'steps_taken'), 'steps_kept': _recorded(model, 'steps_kept'),
                'eval_steps': trainer.property('eval_steps'),
                'hyperparameters': {k[3:]: v for k, v in params.items()
                                    if k.startswith('hp.') and k not in ('hp.source', 'hp.tuned_by')},
                # Where they came from: the Tuner of `tuned_by` (this run, or the last tuning), or the defaults.
                'hyperparameters_source': params.get('hp.source'), 'tuned_by': params.get('hp.tuned_by'),
                'tuning': _tuning_summary(run.tuning if run else None),
                'model_uri': _uri(model), 'drift_verdict': version.drift_verdict,
                'drift_features': version.drift_features},
            'evaluation': self.evaluation() if run else {},
            'infra_validation': self.infra_validation() if run else {},
            'live': self.live,
            'graph': {'artifacts': len(self.upstream.artifacts), 'executions': len(self.upstream.executions)},
        }


def _tuning_summary(tuning) -> Optional[Dict]:
    if not tuning or tuning['source'] == 'defaults':
        return None
    return {'source': tuning['source'], 'tuned_by': tuning['tuned_by'], 'tuned_uri': tuning['tuned_uri'],
            'trials': tuning['trials'], 'best_score': tuning['best_score'], 'objective': tuning['objective']}


def _recorded(artifact, name: str):
    """A custom property of an ML Metadata artifact, or None; an integral double as an int, since
    Kubeflow Pipelines stores every number of an artifact's metadata as a double (100 steps, not 100.0)."""
    found = artifact.custom_properties.get(name) if artifact is not None else None
    if found is not None and found.WhichOneof('value') == 'double_value':
        return number(artifact.custom_properties, name)
    return value(found) if found is not None else None


def _uri(artifact) -> Optional[str]:
    return artifact.uri if artifact is not None else None


def _decision(decision: ledger.Decision, version: int) -> Dict:
    before, after = decision.changes.get(version, (None, None))
    return {'sequence': decision.sequence, 'at': ledger.format_time(decision.at_micros), 'action': decision.action,
            'subject': decision.model_version, 'actor': decision.actor, 'reason': decision.reason,
            'stage_before': before, 'stage_after': after, 'evidence': decision.evidence}


def subgraph(store, artifact_id: int, direction) -> metadata_store_pb2.LineageGraph:
    options = metadata_store_pb2.LineageSubgraphQueryOptions(max_num_hops=MAX_HOPS, direction=direction)
    options.starting_artifacts.filter_query = f'id = {int(artifact_id)}'
    return store.get_lineage_subgraph(options)


def producing_run(store, graph: metadata_store_pb2.LineageGraph, pushed_id: int) -> Optional[run_record.RunRecord]:
    """The run of the execution that output the PushedModel (the Pusher). A later run whose Pusher was
    cached records the same output: the execution that did the push (not cached, the earliest) decides."""
    executions = {e.id: e for e in graph.executions}
    pushers = sorted({e.execution_id for e in graph.events
                      if e.artifact_id == pushed_id and e.type == metadata_store_pb2.Event.OUTPUT},
                     key=lambda i: (executions[i].last_known_state == metadata_store_pb2.Execution.CACHED, i)
                     if i in executions else (True, i))
    runs = {c.id: c for c in graph.contexts if c.type in RUN_CONTEXT_TYPES}
    for pusher in pushers:
        for association in graph.associations:
            if association.execution_id == pusher and association.context_id in runs:
                return run_record.read(store, runs[association.context_id])
    return None


def _schema_artifact(run: Optional[run_record.RunRecord]) -> Optional[metadata_store_pb2.Artifact]:
    step = run.step('ImportSchemaGen') if run else None
    return step.output('schema') if step else None


def _read(path: str) -> Optional[bytes]:
    """A file's bytes, local or on a bucket (Kubeflow); None if it is gone."""
    import tensorflow as tf
    return tf.io.gfile.GFile(path, 'rb').read() if tf.io.gfile.exists(path) else None


def _schema(store, registry: registry_lib.Registry, version: int, run) -> Optional[Schema]:
    artifact = _schema_artifact(run)
    if artifact is None:
        return None
    path = f'{artifact.uri.rstrip("/")}/schema.pbtxt'
    content = _read(path)
    result = Schema(artifact.uri, path if content is not None else None,
                    hashlib.sha256(content).hexdigest() if content is not None else None)
    for previous in reversed([v for v in registry.version_numbers() if v < version]):
        pushed = pushed_model(store, registry.model_base_path, previous)
        if pushed is None:
            continue  # a copy put in by hand: no record of its schema
        earlier = _schema_artifact(producing_run(store, subgraph(store, pushed.id, _Direction.UPSTREAM), pushed.id))
        if earlier is None:
            continue
        result.previous_version = previous
        if earlier.id == artifact.id:  # the same import (cached): the same schema, whatever became of the file
            result.changed = False
            break
        earlier_content = _read(f'{earlier.uri.rstrip("/")}/schema.pbtxt')
        if earlier_content is None or content is None:
            break  # a file is gone: whether it changed is not known (None), never guessed
        result.changed = earlier_content != content
        if result.changed:
            result.differences = _schema_differences(earlier_content, content)
        break
    return result


def _schema_differences(before: bytes, after: bytes) -> List[str]:
    """What changed from the previous version's schema to this one's, feature by feature."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    from pipeline.schema_review import differences
    old, new = (text_format.Parse(content.decode(), schema_pb2.Schema()) for content in (before, after))
    return [f'{d.feature}: {d.field} {d.curated} -> {d.draft}' if d.field != 'feature' else
            f'{d.feature}: {"added" if d.draft == "present" else "removed"}' for d in differences(old, new)]


def trace(store, model_base_path: str, version: int) -> Lineage:
    """The lineage of one pushed version; NotPushed if ML Metadata has no record of its push."""
    registry = registry_lib.Registry(store, model_base_path)
    pushed = pushed_model(store, registry.model_base_path, version)
    if pushed is None or not flag(pushed.custom_properties, 'pushed'):
        known = [v for v in registry.version_numbers()
                 if pushed_model(store, registry.model_base_path, v) is not None]
        raise NotPushed(f'version {version} of {registry.model_base_path} has no push recorded in ML Metadata '
                        f'(a copy put there by hand, or another store); versions with a lineage: '
                        f'{", ".join(map(str, known)) or "none"}')
    upstream = subgraph(store, pushed.id, _Direction.UPSTREAM)
    downstream = subgraph(store, pushed.id, _Direction.DOWNSTREAM)
    run = producing_run(store, upstream, pushed.id)
    decisions = registry.decisions()
    relevant = [d for d in decisions if d.model_version == version or version in d.changes]
    state = registry_lib.replay(decisions)
    return Lineage(model_base_path=registry.model_base_path, version=registry.version(version), pushed=pushed,
                   run=run, upstream=upstream, downstream=downstream, stage=state.stage(version),
                   decisions=relevant, history_problems=ledger.problems(decisions, policy_lib.load()),
                   live=metadata_record.history(store, registry.model_base_path, version),
                   schema=_schema(store, registry, version, run))


def render_text(data: Dict) -> str:
    """`lineage VERSION` as a person reads it: the answer first (stage and why), then what made it."""
    lines = [f'Version {data["version"]}: {data["stage"]}  ({data["directory"]}'
             + ('' if data['on_disk'] else ', no longer on disk') + ')']
    lines += [f'  PROBLEM: {p}' for p in data['history_problems']]
    lines.append('Why it is where it is:')
    history = data['stage_history'] or []
    if not history and not data['approvals']:
        lines.append('  no release decision names it: pushed, never approved or promoted')
    for d in sorted(data['approvals'] + history, key=lambda d: d['sequence']):
        change = f' {d["stage_before"]} -> {d["stage_after"]}' if d['stage_after'] else ''
        subject = ('' if d['subject'] == data['version'] else
                   f' (back to version {d["subject"]})' if d['action'] == 'rollback' else f' (of version {d["subject"]})')
        lines.append(f'  #{d["sequence"]} {d["at"]} {d["action"]}{subject}{change} by {d["actor"]}: {d["reason"]}')
    run = data['run']
    if run:
        trigger = run['trigger']
        why = (trigger['kind'] + (f' {json.dumps(trigger["detail"], sort_keys=True)}' if trigger['detail'] else '')
               if trigger else 'not recorded')
        lines.append(f'Made by run {run["name"]} ({run["outcome"]}, {run["seconds"]:.0f}s), trigger: {why}')
    code = data['code']
    if code:
        lines.append(f'Code: {code["commit"] or "unknown commit"}' + (' (uncommitted changes)' if code['dirty'] else '')
                     + (f', image {code["image"]}' if code['image'] else '')
                     + f', package {code["package_version"]}, tfx {code["tfx_version"]}'
                     + (f', component code sha256 {code["source_digest"][:16]}' if code.get('source_digest') else ''))
    else:
        lines.append('Code: not recorded (a run from before code versions were recorded)')
    if run:
        lines.append('Parameters: ' + ', '.join(f'{k}={v}' for k, v in run['parameters'].items()))
    found = data['data']
    if found:
        rows = ', '.join(f'{split} {n}' for split, n in found['rows'].items())
        lines.append(f'Data: span {found["span"]} of {found["data_root"]} ({", ".join(found["files"]) or "files gone"})'
                     f'; rows: {rows or "unknown"}')
        lines.append(f'  fingerprint at read: {found["input_fingerprint"]}')
        anomalies = [f'{split}: {a}' for split, items in found['anomalies'].items() for a in items]
        lines.append('  anomalies: ' + ('; '.join(anomalies) if anomalies else 'none'))
    schema = data['schema']
    if schema:
        since = ('no earlier version to compare with' if schema['previous_version'] is None else
                 f'{"CHANGED" if schema["changed"] else "unchanged"} since version {schema["previous_version"]}')
        lines.append(f'Schema: {schema["file"]} (sha256 {(schema["sha256"] or "?")[:16]}), {since}')
        lines += [f'  {d}' for d in schema['differences']]
    if data['transform']:
        lines.append(f'Transform: {data["transform"]["preprocessing_fn"]} ({data["transform"]["state"]})')
    training = data['training']
    if training:
        hp = ', '.join(f'{k}={v}' for k, v in training['hyperparameters'].items())
        drift = training['drift_verdict'] or 'not recorded'
        if training['drift_features']:
            drift += f' in {", ".join(training["drift_features"])}'
        epochs = (f' = {training["train_epochs"]:.2f} epochs of {training["train_rows"]:,} rows'
                  if training.get('train_epochs') and training.get('train_rows') else '')
        kept = training.get('steps_kept')
        if kept and kept < training['train_steps']:
            epochs += f', the weights at {kept:,} steps kept (validation AUC stopped improving)'
        lines.append(f'Training: {training["run_fn"]}, {training["train_steps"]} steps{epochs} ({training["state"]}); {hp}')
        lines.append(f'  trained on data with drift verdict: {drift}')
        tuning = training.get('tuning')
        if tuning:
            best = f', best validation AUC {tuning["best_score"]:.4f}' if tuning['best_score'] is not None else ''
            lines.append(f'  hyperparameters tuned by run {tuning["tuned_by"] or "(not in ML Metadata)"} '
                         f'({len(tuning["trials"])} trials{best}; {tuning["tuned_uri"]})')
        elif training.get('hyperparameters_source') == 'defaults':
            lines.append('  hyperparameters: the defaults (no tuning yet)')
    evaluation = data['evaluation']
    if evaluation:
        thresholds = ', '.join(f'{k}={v}' for k, v in evaluation['thresholds'].items())
        baseline = evaluation['baseline_version']
        lines.append(f'Evaluation: {"BLESSED" if evaluation["blessed"] else "not blessed"} against {thresholds}; '
                     f'baseline {"version " + str(baseline) if baseline else "none (first model)"}')
        for name, values in evaluation['slices'].items():
            candidate, base = values['candidate'], values['baseline']
            shown = (f'  {name:<32} n={int(candidate.get("example_count", 0)):<6} '
                     f'auc {metric_text(candidate.get("auc"))}  '
                     f'accuracy {metric_text(candidate.get("binary_accuracy"))}')
            if base:
                shown += f'  (baseline auc {metric_text(base.get("auc"))})'
            if name == 'overall' or len(evaluation['slices']) <= 12:
                lines.append(shown)
        if len(evaluation['slices']) > 12:
            lines.append(f'  ... and {len(evaluation["slices"]) - 1} slices (--json or --html for each)')
    infra = data.get('infra_validation') or {}
    if infra:
        latency = ', '.join(f'{p} p99 {v["p99"]:.1f} ms' for p, v in sorted(infra['latency_ms'].items()))
        lines.append(f'Infra validation: {"passed" if infra["blessed"] else "FAILED: " + str(infra["reason"])}; '
                     f'{len(infra["checks"])} checks, load {infra["load_seconds"] or 0:.1f} s, '
                     f'{latency or "no latency"}, {infra["memory_mb"] or 0:.0f} MB')
        for check in infra['checks']:
            if check['name'].startswith('behaviour: ') or not check['passed']:
                lines.append(f'  {"pass" if check["passed"] else "FAIL"} {check["name"]}: {check["detail"]}')
    lines.append(f'Pushed: {data["pushed"]["at"]} UTC to {data["pushed"]["destination"]}')
    live = data['live']
    if not live:
        lines.append('Live: no monitoring pass over its traffic recorded yet')
    else:
        latest = live[-1]
        alerts = sum(int(p.get('alerts') or 0) for p in live)
        lines.append(f'Live: {len(live)} monitoring window(s); latest: {latest.get("examples")} requests, '
                     f'{latest.get("labelled_examples")} labelled, auc {metric_text(latest.get("live_auc"))}, '
                     f'accuracy {metric_text(latest.get("live_accuracy"))}; {alerts} alert(s) in all')
        kinds, drifted = alert_records.kinds_and_features(a for p in live for a in p['findings'].get('alerts', []))
        if kinds:
            lines.append(f'  alerts since push: {", ".join(kinds)}'
                         + (f' (drift or skew in {", ".join(drifted)})' if drifted else ''))
    return '\n'.join(lines)
