"""What a run did, read back from ML Metadata: per-component state and time,
drift against the serving model's training data, evaluation metrics,
blessing and push.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Optional, Tuple

from ml_metadata.proto import metadata_store_pb2

from components import code_version, slice_gates
from components.artifact_contents import OVERALL, metrics_by_slice
from components.drift_check import drift as drift_check
from foundation import metadata_store
from foundation.metadata_store import flag, number, output_artifacts, text
from pipeline import pushes, run_trigger
from pipeline.config import PipelineConfig

_STATE_NAMES = {
    metadata_store_pb2.Execution.COMPLETE: 'done',
    metadata_store_pb2.Execution.CACHED: 'cached',
    metadata_store_pb2.Execution.FAILED: 'FAILED',
    metadata_store_pb2.Execution.RUNNING: 'running',
    metadata_store_pb2.Execution.CANCELED: 'canceled',
    metadata_store_pb2.Execution.NEW: 'new',
}


@dataclasses.dataclass
class ComponentRun:
    node_id: str
    state: str
    seconds: float
    # When ML Metadata recorded its execution (seconds since the epoch): with `seconds`, its window in the run.
    started: float = 0.0


@dataclasses.dataclass
class RunSummary:
    run_id: str
    components: List[ComponentRun]
    wall_seconds: float
    metrics: Dict[str, float] = dataclasses.field(default_factory=dict)
    baseline_metrics: Dict[str, float] = dataclasses.field(default_factory=dict)
    blessed: Optional[bool] = None
    # Every gate the Evaluator applied (overall and per slice, components/slice_gates.py), the gated columns'
    # slices with their counts (judged or not) and the class count a slice needed, and why it refused the model.
    gates: List[slice_gates.Gate] = dataclasses.field(default_factory=list)
    gated_slices: List[slice_gates.SliceCount] = dataclasses.field(default_factory=list)
    min_slice_class_examples: Optional[int] = None
    refusal: Optional[str] = None
    # The infra validation's outcome (components/infra_validator): blessed, reason, load_seconds, p99_ms, memory_mb.
    infra: Optional[Dict[str, object]] = None
    pushed_to: Optional[str] = None
    # The Pusher was cached, so this run pushed nothing: (the version its PushedModel names, the run that
    # pushed it, None if not found).
    push_cached: Optional[Tuple[int, Optional[str]]] = None
    failure: Optional[str] = None
    # Output artifact URIs by node id and output key, for reports.
    outputs: Dict[str, Dict[str, str]] = dataclasses.field(default_factory=dict)
    drift: Optional[drift_check.DriftResult] = None
    drift_policy: Optional[str] = None
    trigger: Optional[run_trigger.Trigger] = None
    # Where every row went: 'read' (the span's CSV rows), 'train'/'eval' (ExampleGen's splits), 'evaluated'
    # (the evaluation's overall example count); only what this run got to. Transform writes no examples: the
    # Trainer reads ExampleGen's (taxi_model/inputs.py).
    rows: Dict[str, int] = dataclasses.field(default_factory=dict)
    # The Trainer's steps (planned; taken and kept when validation stopped it early) and batch size.
    training: Dict[str, int] = dataclasses.field(default_factory=dict)
    # The Tuner's output: where the Trainer's hyperparameters came from (components/tuner/tuning_records.py
    # SOURCES), the values, and the tuning that found them (trials, best score, its artifact's URI).
    tuning: Optional[Dict[str, object]] = None
    # The BulkInferrer's output: examples scored, outliers flagged, splits, seconds (None: nothing scored).
    scored: Optional[Dict[str, object]] = None

    @property
    def succeeded(self) -> bool:
        return self.failure is None and all(c.state in ('done', 'cached') for c in self.components)

    def _infra_line(self) -> str:
        infra = self.infra
        figures = ', '.join(text for text in (
            f'load {infra["load_seconds"]:.1f} s' if infra.get('load_seconds') is not None else '',
            f'p99 {infra["p99_ms"]:.1f} ms' if infra.get('p99_ms') is not None else '',
            f'{infra["memory_mb"]:.0f} MB' if infra.get('memory_mb') is not None else '') if text)
        if infra['blessed']:
            return f'Infra validation: passed {infra["checks_passed"]} checks ({figures})'
        return f'Infra validation: FAILED: {infra["reason"]}' + (f' ({figures})' if figures else '')

    def _tuning_line(self) -> str:
        tuning = self.tuning
        values = ', '.join(f'{k}={v}' for k, v in sorted(tuning['hyperparameters'].items()))
        if tuning['source'] == 'defaults':
            return f'Hyperparameters: the defaults (never tuned): {values}'
        found = (f'{tuning["trial_count"]} trial(s), best validation AUC {tuning["best_score"]:.4f}'
                 if tuning.get('best_score') is not None else f'{tuning.get("trial_count", 0)} trial(s)')
        if tuning['source'] == 'tuned':
            return f'Hyperparameters: tuned in this run ({found}, {tuning.get("seconds") or 0:.0f} s): {values}'
        return f'Hyperparameters: from the last tuning ({found}; {tuning.get("tuned_uri")}): {values}'

    def state_of(self, node_id: str) -> Optional[str]:
        return next((c.state for c in self.components if c.node_id == node_id), None)

    def render(self) -> str:
        lines = [f'Run {self.run_id}: {"succeeded" if self.succeeded else "FAILED"} in {self.wall_seconds:.1f}s'
                 + (f' (trigger: {self.trigger.describe()})' if self.trigger else '')]
        for c in self.components:
            lines.append(f'  {c.node_id:<20} {c.state:<7} {c.seconds:6.1f}s')
        if self.rows:
            lines.append(_rows_line(self.rows))
        if self.training:
            lines.append(self._training_line())
        if self.tuning:
            lines.append(self._tuning_line())
        lines.extend(self._drift_lines())
        if self.metrics:
            shown = ', '.join(f'{k}={v:.4f}' for k, v in sorted(self.metrics.items()))
            lines.append(f'Eval metrics (overall): {shown}')
        if self.baseline_metrics:
            shown = ', '.join(f'{k}={v:.4f}' for k, v in sorted(self.baseline_metrics.items()))
            lines.append(f'Baseline (latest pushed): {shown}')
        if self.blessed is not None:
            lines.append(f'Blessed: {"yes" if self.blessed else "no"}'
                         + (f' ({self.refusal})' if not self.blessed and self.refusal else ''))
            lines.extend(slice_gates.summary_lines(self.gates, self.gated_slices, self.min_slice_class_examples))
        if self.infra is not None:
            lines.append(self._infra_line())
        if self.scored:
            lines.append(f'Scored: {self.scored["examples"]:,} examples of the span ({self.scored["splits"]}) by the '
                         f'candidate, {self.scored["outliers"]:,} flagged as outliers')
        if self.pushed_to:
            lines.append(f'Pushed to: {self.pushed_to}')
            lines.append(f'Serve it:  taxi-pipeline serve --model-base-path {os.path.dirname(self.pushed_to)}')
        elif self.push_cached:
            version, by = self.push_cached
            lines.append(f'Pushed: nothing new (the Pusher was cached: version {version}, pushed by '
                         f'{f"run {by}" if by else "an earlier run"})')
        elif self.infra is not None and not self.infra['blessed'] and self.blessed:
            lines.append(f'Pushed: nothing (infra validation refused it: {self.infra["reason"]})')
        elif self.blessed is not None:
            lines.append('Pushed: nothing (the model was not blessed)' if not self.blessed else 'Pushed: no')
        if self.failure:
            lines.append(f'Failure: {self.failure.splitlines()[0]}')
        return '\n'.join(lines)

    def _training_line(self) -> str:
        """How much of the training split the model saw: too few steps for the data is not an error, but
        a reader should see it."""
        steps, batch = self.training['steps'], self.training.get('batch_size')
        if not batch:
            return f'Training: {steps:,} steps'
        seen = steps * batch
        train = self.rows.get('train')
        coverage = f', {seen / train:.2f} epochs of the {train:,} training rows' if train else ''
        line = f'Training: {steps:,} steps of {batch} = {seen:,} examples{coverage}'
        taken, kept = self.training.get('taken', steps), self.training.get('kept', steps)
        if taken < steps or kept < taken:
            stopped = f'stopped after {taken:,} steps, ' if taken < steps else ''
            epochs = f' ({kept * batch / train:.2f} epochs)' if train else ''
            line += f'; validation AUC stopped improving: {stopped}kept the weights at {kept:,} steps{epochs}'
        return line

    def _drift_lines(self) -> List[str]:
        drift = self.drift
        if drift is None:
            return []
        if drift.verdict == drift_check.NO_BASELINE:
            return ['Drift: not checked (nothing pushed yet, or the pushed version carries no training statistics)']
        against = f'Drift vs the data serving version {drift.baseline_version} was trained on'
        if drift.verdict == drift_check.NO_DRIFT:
            measured = [f for f in drift.features if f.feature != drift_check.EXAMPLE_COUNT]
            closest = max(measured, key=lambda f: f.value / max(float(f.threshold), 1e-12), default=None)
            return [f'{against}: none' + (f' (closest: {closest.feature} {closest.value:.3g} of {closest.threshold})'
                                          if closest else '')]
        action = ('the run stopped before training' if self.drift_policy == drift_check.BLOCK
                  else 'training went on; the model is marked drift_verdict=drift')
        return [f'{against}: DRIFT in {", ".join(drift.drifted)} (policy {self.drift_policy}: {action})'] + [
            f'  {line}' for line in drift_check.describe(drift)]


def _rows_line(rows: Dict[str, int]) -> str:
    shown = [f'read {rows["read"]:,}'] if 'read' in rows else []
    if 'train' in rows:
        shown.append(f'train {rows["train"]:,} + eval {rows["eval"]:,}')
    if 'evaluated' in rows:
        shown.append(f'evaluated {rows["evaluated"]:,}' + (' (an evenly spaced sample of the eval split)'
                                                           if 'eval sample' in rows else ''))
    return 'Rows: ' + ' -> '.join(shown)


def read_tuning(artifact) -> Optional[Dict[str, object]]:
    """What the Tuner's HyperParameters artifact records (components/tuner/executor.py), as plain values; None
    for an artifact without a source (another Tuner's)."""
    props = artifact.custom_properties
    if 'source' not in props:
        return None
    trials = json.loads(props['trials'].string_value) if 'trials' in props else []
    return {'source': props['source'].string_value,
            'hyperparameters': json.loads(props['hyperparameters'].string_value),
            'tuned_uri': props['tuned_uri'].string_value if 'tuned_uri' in props else None,
            'trials': trials, 'trial_count': len(trials), 'best_score': number(props, 'best_score'),
            'seconds': number(props, 'tuning_seconds'), 'objective': props['objective'].string_value
            if 'objective' in props else None}


def unaccounted(rows: Dict[str, int]) -> List[str]:
    """Where rows went missing (or appeared) between the steps that counted them; empty when all add up."""
    problems = []
    if 'read' in rows and 'train' in rows and rows['read'] != rows['train'] + rows['eval']:
        problems.append(f'the span has {rows["read"]:,} rows but ExampleGen split {rows["train"] + rows["eval"]:,} '
                        f'(train {rows["train"]:,} + eval {rows["eval"]:,})')
    if 'eval sample' in rows and 'eval' in rows and rows['eval sample'] > rows['eval']:
        problems.append(f'the Evaluator sampled {rows["eval sample"]:,} examples of an eval split of {rows["eval"]:,}')
    expected = rows.get('eval sample', rows.get('eval'))
    if 'evaluated' in rows and expected is not None and rows['evaluated'] != expected:
        problems.append(f'the Evaluator counted {rows["evaluated"]:,} examples of the {expected:,} it was given '
                        f'({"a sample of " if "eval sample" in rows else ""}the eval split)')
    return problems


def read_gates(summary: RunSummary, evaluation: metadata_store_pb2.Artifact,
               blessing: metadata_store_pb2.Artifact) -> None:
    """The Evaluator's gates, its gated slices and its reason for refusing, as it recorded them (none for an
    evaluation made before the slice gates)."""
    props = evaluation.custom_properties
    summary.gates = slice_gates.load_gates(text(props, slice_gates.GATES_PROPERTY))
    summary.gated_slices = slice_gates.load_counts(text(props, slice_gates.SLICES_PROPERTY))
    minimum = number(props, slice_gates.MIN_SLICE_CLASS_EXAMPLES)
    summary.min_slice_class_examples = int(minimum) if minimum is not None else None
    summary.refusal = text(blessing.custom_properties, slice_gates.REASON_PROPERTY) or None


def _training(execution: metadata_store_pb2.Execution,
              model: Optional[metadata_store_pb2.Artifact] = None) -> Dict[str, int]:
    """Steps and batch size: as the model records them (the steps taken, however set), else as the
    execution's parameters give them."""
    import json
    recorded = model.custom_properties if model is not None else {}
    if 'train_steps' in recorded:
        found = {'steps': int(number(recorded, 'train_steps'))}
        for key, name in (('train_batch_size', 'batch_size'), ('steps_taken', 'taken'), ('steps_kept', 'kept')):
            if key in recorded:
                found[name] = int(number(recorded, key))
        return found
    properties = execution.custom_properties
    config = json.loads(properties['custom_config'].string_value or '{}') if 'custom_config' in properties else {}
    batch = (config or {}).get('hyperparameters', {}).get('batch_size')
    found = {'steps': int(number(properties, 'train_steps', 0))}
    return {**found, 'batch_size': int(batch)} if batch else found


def _pushed_version(properties) -> int:
    """The version a PushedModel names: its `pushed_version`, else its destination's last part."""
    found = properties.get('pushed_version')
    return int(found.string_value if found is not None and found.string_value
               else os.path.basename(properties['pushed_destination'].string_value.rstrip('/')))


def _split_sizes(statistics_uri: str) -> Dict[str, int]:
    import tensorflow_data_validation as tfdv
    return {split: int(tfdv.load_stats_binary(os.path.join(statistics_uri, f'Split-{split}', 'FeatureStats.pb'))
                       .datasets[0].num_examples) for split in ('train', 'eval')}


def _component_runs(store, config: PipelineConfig, run: metadata_store_pb2.Context):
    """(ComponentRun, execution) pairs of one pipeline run, in execution order."""
    prefix = f'{config.pipeline_name}.'
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        node = next((c.name for c in store.get_contexts_by_execution(execution.id) if c.type == 'node'), '?')
        node_id = node[len(prefix):] if node.startswith(prefix) else node
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
        yield ComponentRun(node_id, _STATE_NAMES.get(execution.last_known_state, 'unknown'), seconds,
                           execution.create_time_since_epoch / 1000), execution


def latest_run(store, since_ms: int = 0) -> Optional[metadata_store_pb2.Context]:
    """The newest pipeline run whose context was created at or after `since_ms` (None if none)."""
    runs = [c for c in store.get_contexts_by_type('pipeline_run') if c.create_time_since_epoch >= since_ms]
    return max(runs, key=lambda c: c.create_time_since_epoch) if runs else None


def latest_run_executions(store, config: PipelineConfig) -> Dict[str, metadata_store_pb2.Execution]:
    """The executions of the newest run, by node id (empty if nothing ran yet)."""
    run = latest_run(store)
    return {component.node_id: execution for component, execution in _component_runs(store, config, run)} if run else {}


def components_of(store, config: PipelineConfig, run: metadata_store_pb2.Context) -> List[ComponentRun]:
    """A run's components as far as it got (for progress)."""
    return [component for component, _ in _component_runs(store, config, run)]


def summarize_latest_run(config: PipelineConfig, wall_seconds: float,
                         failure: Optional[BaseException] = None, since_ms: int = 0,
                         trigger: Optional[run_trigger.Trigger] = None,
                         code: Optional[code_version.CodeVersion] = None,
                         rows_read: Optional[int] = None) -> RunSummary:
    """The newest run that started after `since_ms`; records `trigger` and `code` with it when given.

    With `rows_read` (the span's CSV rows), every row is accounted for: split, evaluated; a run
    whose counts do not add up fails (`failure` says where rows went missing).
    """
    failure_text = f'{type(failure).__name__}: {failure}' if failure else None
    if not os.path.exists(config.metadata_path):  # failed before ML Metadata was created
        return RunSummary('(not started)', [], wall_seconds, failure=failure_text)
    store = metadata_store.connect(config.metadata_path, mode=metadata_store.WRITE if trigger is not None or code is not None
                                   else metadata_store.READ)
    run = latest_run(store, since_ms)
    if run is None:
        return RunSummary('(none)', [], wall_seconds, failure=failure_text)
    if trigger is not None:
        run_trigger.record(store, run, trigger)
    if code is not None:
        code_version.record(store, run, code)
    summary = RunSummary(run.name, [], wall_seconds, failure=failure_text, trigger=trigger)
    for component, execution in _component_runs(store, config, run):
        summary.components.append(component)
        outputs = output_artifacts(store, execution.id)
        summary.outputs[component.node_id] = {key: artifact.uri for key, artifact in outputs.items()}
        if 'drift_report' in outputs:
            summary.drift = drift_check.read_result(outputs['drift_report'])
            policy = outputs['drift_report'].custom_properties.get(drift_check.POLICY)
            summary.drift_policy = policy.string_value if policy else None
        if 'blessing' in outputs and 'evaluation' not in outputs and \
                outputs['blessing'].custom_properties.get('checks_passed') is not None:
            props = outputs['blessing'].custom_properties
            summary.infra = {'blessed': flag(props, 'blessed'), 'reason': props['reason'].string_value,
                             'checks_passed': number(props, 'checks_passed', 0),
                             **{key: number(props, key) for key in ('load_seconds', 'p99_ms', 'memory_mb')}}
        if 'evaluation' in outputs and 'blessing' in outputs:
            summary.metrics, summary.baseline_metrics = metrics_by_slice(
                outputs['evaluation'].uri).get(OVERALL, ({}, {}))
            summary.blessed = flag(outputs['blessing'].custom_properties, 'blessed')
            read_gates(summary, outputs['evaluation'], outputs['blessing'])
        if 'statistics' in outputs and component.node_id == 'StatisticsGen':
            summary.rows.update(_split_sizes(outputs['statistics'].uri))
        if 'evaluation' in outputs and 'example_count' in summary.metrics:
            summary.rows['evaluated'] = int(summary.metrics['example_count'])
            kept = number(outputs['evaluation'].custom_properties, 'evaluated_examples')
            if kept is not None and kept != summary.rows.get('eval'):
                summary.rows['eval sample'] = kept
        if 'best_hyperparameters' in outputs:
            summary.tuning = read_tuning(outputs['best_hyperparameters'])
        if 'inference_result' in outputs and flag(outputs['inference_result'].custom_properties, 'inferred'):
            props = outputs['inference_result'].custom_properties
            summary.scored = {'examples': number(props, 'examples', 0), 'outliers': number(props, 'outliers', 0),
                              'splits': props['splits'].string_value, 'seconds': number(props, 'seconds')}
        if component.node_id == 'Trainer' and 'train_steps' in execution.custom_properties:
            summary.training = _training(execution, outputs.get('model'))
        if 'pushed_model' in outputs:
            props = outputs['pushed_model'].custom_properties
            if flag(props, 'pushed') and execution.last_known_state == metadata_store_pb2.Execution.CACHED:
                by = pushes.pushed_by(store, outputs['pushed_model'].id)
                summary.push_cached = (_pushed_version(props), by.name if by is not None else None)
            elif flag(props, 'pushed'):
                summary.pushed_to = props['pushed_destination'].string_value
    if rows_read is not None and summary.rows:
        summary.rows = {'read': rows_read, **summary.rows}
    problems = unaccounted(summary.rows)
    if problems and summary.failure is None:
        summary.failure = 'RowsUnaccounted: ' + '; '.join(problems)
    return summary
