"""One pipeline run as ML Metadata recorded it, read with its lineage API.

A run is a context (LocalDagRunner's `pipeline_run`, Kubeflow Pipelines v2's
`system.PipelineRun`); one `get_lineage_subgraph` query, starting from the
run's executions and going one hop both ways, returns every execution, the
artifacts each read and wrote, the events between them and the contexts they
belong to. Everything here is read off that graph: which component each
execution was (its `node` context, or Kubeflow's task name), its state and
time, its parameters (TFX records exec properties on the execution, under
every runner), and the artifacts by input and output key.

What needs TFDV or TFMA to read (statistics, per-slice metrics) is loaded
only when asked for: listing runs stays fast.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Dict, Iterable, List, Optional, Tuple

from ml_metadata.proto import metadata_store_pb2

from components import code_version
from foundation.metadata_store import RUN_CONTEXT_TYPES, exec_property, flag, value
from pipeline import pushes, run_trigger

# The Evaluator's overall metrics on its output artifact (components.evaluator.METRIC_PREFIX; not imported:
# that module loads TFMA).
METRIC_PREFIX = 'metric_'
NODE_CONTEXT_TYPE = 'node'
_Direction = metadata_store_pb2.LineageSubgraphQueryOptions.Direction
OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
STATES = {
    metadata_store_pb2.Execution.COMPLETE: 'done', metadata_store_pb2.Execution.CACHED: 'cached',
    metadata_store_pb2.Execution.FAILED: 'FAILED', metadata_store_pb2.Execution.RUNNING: 'running',
    metadata_store_pb2.Execution.CANCELED: 'canceled', metadata_store_pb2.Execution.NEW: 'new',
}
# The run parameters a person sets, by the component execution that records them (its exec property).
PARAMETERS = (
    ('data_root', 'CsvExampleGen', 'input_base'),
    ('drift_policy', 'DriftCheck', 'drift_policy'),
    ('train_epochs', 'Trainer', 'train_epochs'),
    ('train_steps', 'Trainer', 'train_steps'),
    ('eval_steps', 'Trainer', 'eval_steps'),
    ('min_auc', 'Evaluator', 'min_auc'),
    ('min_accuracy', 'Evaluator', 'min_accuracy'),
    ('max_auc_drop', 'Evaluator', 'max_auc_drop'),
    ('tune', 'Tuner', 'tune'),
    ('tuning_max_trials', 'Tuner', 'max_trials'),
    ('tuning_max_seconds', 'Tuner', 'max_seconds'),
)


@dataclasses.dataclass
class Step:
    """One component's execution: its state, time, parameters and artifacts by key."""

    node_id: str
    execution: metadata_store_pb2.Execution
    inputs: Dict[str, List[metadata_store_pb2.Artifact]]
    outputs: Dict[str, List[metadata_store_pb2.Artifact]]

    @property
    def state(self) -> str:
        return STATES.get(self.execution.last_known_state, 'unknown')

    @property
    def seconds(self) -> float:
        return (self.execution.last_update_time_since_epoch - self.execution.create_time_since_epoch) / 1000

    def output(self, key: str) -> Optional[metadata_store_pb2.Artifact]:
        found = self.outputs.get(key)
        return found[0] if found else None

    def input(self, key: str) -> Optional[metadata_store_pb2.Artifact]:
        found = self.inputs.get(key)
        return found[0] if found else None

    def property(self, name: str):
        """An exec property, as either runner records it (foundation.metadata_store.exec_property)."""
        return exec_property(self.execution, name)


def node_ids(graph: metadata_store_pb2.LineageGraph, pipeline_name: Optional[str] = None) -> Dict[int, str]:
    """Execution id -> component id: its `node` context (`<pipeline>.<component>`), else Kubeflow's task name."""
    nodes = {c.id: c.name for c in graph.contexts if c.type == NODE_CONTEXT_TYPE}
    found = {}
    for association in graph.associations:
        if association.context_id in nodes:
            name = nodes[association.context_id]
            found[association.execution_id] = name.split('.', 1)[1] if '.' in name else name
    for execution in graph.executions:
        if execution.id not in found:
            task = execution.custom_properties.get('task_name') or execution.custom_properties.get('display_name')
            found[execution.id] = task.string_value if task is not None else execution.type.rsplit('.', 1)[-1]
    return found


def steps(graph: metadata_store_pb2.LineageGraph, execution_ids: Optional[Iterable[int]] = None) -> List[Step]:
    """The graph's executions (or those named) as Steps, in execution order."""
    artifacts = {a.id: a for a in graph.artifacts}
    names = node_ids(graph)
    wanted = set(execution_ids) if execution_ids is not None else None
    found = {}
    for execution in graph.executions:
        if wanted is None or execution.id in wanted:
            found[execution.id] = Step(names[execution.id], execution, {}, {})
    for event in graph.events:
        step, artifact = found.get(event.execution_id), artifacts.get(event.artifact_id)
        if step is None or artifact is None or not event.path.steps:
            continue
        side = step.outputs if event.type in OUTPUT_EVENTS else step.inputs if event.type in INPUT_EVENTS else None
        if side is not None:
            side.setdefault(event.path.steps[0].key, []).append(artifact)
    return [found[i] for i in sorted(found)]


@dataclasses.dataclass
class RunRecord:
    """A pipeline run: when, why, with what code and parameters, each component's execution and artifacts."""

    context: metadata_store_pb2.Context
    steps: Dict[str, Step]
    graph: metadata_store_pb2.LineageGraph
    # When the run's Pusher was cached: the name of the run that did push its PushedModel (`read` looks
    # it up; None if not found).
    push_cached_by: Optional[str] = None
    # The run whose Tuner found the hyperparameters this run trained with (`read` looks it up; None: the
    # defaults, a run from before the Tuner, or a tuning ML Metadata does not know).
    tuned_by: Optional[str] = None

    @property
    def name(self) -> str:
        return self.context.name

    @property
    def trigger(self) -> Optional[run_trigger.Trigger]:
        return run_trigger.read(self.context)

    @property
    def code(self) -> Optional[code_version.CodeVersion]:
        """The code that ran the run (local runs), else the code that trained its model (any runner)."""
        found = code_version.read(self.context.custom_properties)
        trainer = self.step('Trainer')
        if found is None and trainer and trainer.output('model'):
            found = code_version.read(trainer.output('model').custom_properties)
        # On Kubeflow the task's container image is on its execution (the driver's `image`): the image
        # that ran, where the model's stamp only has what the image was built with.
        ran_in = trainer.execution.custom_properties.get('image') if trainer else None
        if found is not None and found.image is None and ran_in is not None and ran_in.string_value:
            found = dataclasses.replace(found, image=ran_in.string_value)
        return found

    @property
    def started_ms(self) -> int:
        times = [s.execution.create_time_since_epoch for s in self.steps.values()]
        return min(times) if times else self.context.create_time_since_epoch

    @property
    def ended_ms(self) -> int:
        times = [s.execution.last_update_time_since_epoch for s in self.steps.values()]
        return max(times) if times else self.context.create_time_since_epoch

    @property
    def seconds(self) -> float:
        return (self.ended_ms - self.started_ms) / 1000

    @property
    def outcome(self) -> str:
        """'succeeded', 'failed' (a component failed), 'canceled' (killed) or 'running'."""
        states = {s.state for s in self.steps.values()}
        if 'FAILED' in states:
            return 'failed'
        if 'canceled' in states:
            return 'canceled'
        if states <= {'done', 'cached'} and states:
            return 'succeeded'
        return 'running'

    def step(self, node_id: str) -> Optional[Step]:
        return self.steps.get(node_id)

    def parameters(self) -> Dict[str, object]:
        """What a person sets per run, as the executions recorded it; hyperparameters as `hp.<name>`."""
        found = {}
        for name, node_id, key in PARAMETERS:
            step = self.step(node_id)
            if step is not None and step.property(key) is not None:
                found[name] = step.property(key)
        trainer = self.step('Trainer')
        config = trainer.property('custom_config') if trainer else None
        if config:
            for key, item in sorted((json.loads(config) or {}).get('hyperparameters', {}).items()):
                found[f'hp.{key}'] = item
        # What the model was trained with (the Tuner's values laid over the configured ones), where recorded.
        model = trainer.output('model') if trainer else None
        if model is not None and 'hyperparameters' in model.custom_properties:
            for key, item in sorted(json.loads(model.custom_properties['hyperparameters'].string_value).items()):
                found[f'hp.{key}'] = item
            if 'hyperparameters_source' in model.custom_properties:
                found['hp.source'] = model.custom_properties['hyperparameters_source'].string_value
            if self.tuned_by:
                found['hp.tuned_by'] = self.tuned_by
        return found

    @property
    def tuning(self) -> Optional[Dict[str, object]]:
        """The Tuner's record of this run (pipeline.run_summary.read_tuning) and the run whose tuning it is."""
        from pipeline import run_summary  # its imports cost listing runs a fifth of a second
        step = self.step('Tuner')
        artifact = step.output('best_hyperparameters') if step else None
        found = run_summary.read_tuning(artifact) if artifact is not None else None
        return None if found is None else {**found, 'tuned_by': self.tuned_by}

    # Data.
    @property
    def examples(self) -> Optional[metadata_store_pb2.Artifact]:
        step = self.step('CsvExampleGen')
        return step.output('examples') if step else None

    @property
    def span(self) -> Optional[int]:
        examples = self.examples
        if examples is None:
            return None
        found = examples.custom_properties.get('span') or examples.properties.get('span')
        return int(value(found)) if found is not None else None

    @property
    def input_fingerprint(self) -> Optional[str]:
        """ExampleGen's fingerprint of the files it read: count, bytes, checksums of their mtimes."""
        examples = self.examples
        found = examples.custom_properties.get('input_fingerprint') if examples is not None else None
        return found.string_value if found is not None else None

    @property
    def span_paths(self) -> List[str]:
        """The CSV files of the span the run read (as they are now: the fingerprint says what they were)."""
        root, span = self.parameters().get('data_root'), self.span
        if not root or span is None:
            return []
        pattern = f'{str(root).rstrip("/")}/span-{span}/*.csv'
        if '://' in pattern:  # a bucket on Kubeflow
            import tensorflow as tf
            return sorted(tf.io.gfile.glob(pattern))
        import glob
        return sorted(glob.glob(pattern))

    @property
    def statistics_uri(self) -> Optional[str]:
        step = self.step('StatisticsGen')
        artifact = step.output('statistics') if step else None
        return artifact.uri if artifact is not None else None

    def statistics(self, split: str):
        """TFDV statistics of a split (None if the run has none)."""
        uri = self.statistics_uri
        if uri is None:
            return None
        import tensorflow as tf  # reads gs:// (Kubeflow) as well as local paths
        import tensorflow_data_validation as tfdv
        path = f'{uri.rstrip("/")}/Split-{split}/FeatureStats.pb'
        return tfdv.load_stats_binary(path) if tf.io.gfile.exists(path) else None

    def rows(self) -> Dict[str, int]:
        """Examples per split, from the statistics."""
        found = {}
        for split in ('train', 'eval'):
            stats = self.statistics(split)
            if stats is not None:
                found[split] = int(stats.datasets[0].num_examples)
        return found

    # Model.
    @property
    def evaluation_uri(self) -> Optional[str]:
        step = self.step('Evaluator')
        artifact = step.output('evaluation') if step else None
        return artifact.uri if artifact is not None else None

    def metrics(self) -> Dict[str, tuple]:
        """(candidate, baseline) metrics per slice, 'overall' included ({} without an evaluation)."""
        if not self.evaluation_uri:
            return {}
        from components.artifact_contents import metrics_by_slice
        return metrics_by_slice(self.evaluation_uri)

    def overall_metrics(self) -> Dict[str, float]:
        """The candidate's overall metrics as the Evaluator recorded them in ML Metadata (`metric_<name>`
        on its output); for runs from before it did, read from the output with TFMA (slow to import)."""
        step = self.step('Evaluator')
        artifact = step.output('evaluation') if step else None
        if artifact is None:
            return {}
        recorded = {k[len(METRIC_PREFIX):]: value(v) for k, v in artifact.custom_properties.items()
                    if k.startswith(METRIC_PREFIX)}
        if recorded:
            return recorded
        from components.artifact_contents import OVERALL
        return self.metrics().get(OVERALL, ({}, {}))[0]

    @property
    def blessed(self) -> Optional[bool]:
        step = self.step('Evaluator')
        blessing = step.output('blessing') if step else None
        if blessing is None or 'blessed' not in blessing.custom_properties:
            return None
        return flag(blessing.custom_properties, 'blessed')

    def _pushed_model(self) -> Optional[metadata_store_pb2.Artifact]:
        """The Pusher's output if it says a model was pushed, by this run or (cached) an earlier one."""
        step = self.step('Pusher')
        artifact = step.output('pushed_model') if step else None
        if artifact is None or not flag(artifact.custom_properties, 'pushed'):
            return None
        return artifact

    @property
    def push_was_cached(self) -> bool:
        step = self.step('Pusher')
        return step is not None and step.state == 'cached'

    @property
    def pushed(self) -> Optional[metadata_store_pb2.Artifact]:
        """The PushedModel this run pushed; None if it pushed nothing, its Pusher cached included."""
        return None if self.push_was_cached else self._pushed_model()

    @property
    def pushed_version(self) -> Optional[int]:
        pushed = self.pushed
        return int(pushed.custom_properties['pushed_version'].string_value) if pushed is not None else None

    @property
    def push_cached(self) -> Optional[Tuple[int, Optional[str]]]:
        """A cached Pusher's (version, the run that pushed it); None if this run's Pusher was not cached or
        the model it names was not pushed."""
        artifact = self._pushed_model() if self.push_was_cached else None
        if artifact is None:
            return None
        return int(artifact.custom_properties['pushed_version'].string_value), self.push_cached_by


def _run_graph(store, context: metadata_store_pb2.Context) -> metadata_store_pb2.LineageGraph:
    # A run whose context exists but no execution yet (killed, or failed before its first component)
    # has no lineage to query (the query refuses to start from nothing).
    if not store.get_executions_by_context(context.id):
        return metadata_store_pb2.LineageGraph(contexts=[context])
    options = metadata_store_pb2.LineageSubgraphQueryOptions(max_num_hops=1, direction=_Direction.BIDIRECTIONAL)
    name = context.name.replace("'", "\\'")
    options.starting_executions.filter_query = f"contexts_a.type = '{context.type}' AND contexts_a.name = '{name}'"
    return store.get_lineage_subgraph(options)


def read(store, context: metadata_store_pb2.Context) -> RunRecord:
    graph = _run_graph(store, context)
    # Kubeflow's DAG executions (the run's root, sub-DAGs) are not components.
    dags = {e.id for e in graph.executions if e.type == 'system.DAGExecution'}
    in_run = {a.execution_id for a in graph.associations if a.context_id == context.id} - dags
    found = steps(graph, in_run)
    # A component retried within a run has several executions: the last one stands.
    record = RunRecord(context, {s.node_id: s for s in found}, graph)
    tuner = record.step('Tuner')
    tuned = tuner.output('best_hyperparameters') if tuner else None
    tuned_uri = tuned.custom_properties.get('tuned_uri') if tuned is not None else None
    if tuned_uri is not None and tuned_uri.string_value:
        uri = tuned_uri.string_value
        record.tuned_by = record.name if uri == tuned.uri else tuning_run(store, uri)
    cached = record.push_cached
    if cached is not None:  # who pushed it: two hops from this run, outside its graph
        by = pushes.pushed_by(store, record.step('Pusher').output('pushed_model').id)
        record.push_cached_by = by.name if by is not None else None
    return record


def tuning_run(store, uri: str) -> Optional[str]:
    """The name of the run whose execution wrote the artifact at `uri` (a tuning's HyperParameters), if known."""
    for artifact in store.get_artifacts_by_uri(uri):
        writers = [e.execution_id for e in store.get_events_by_artifact_ids([artifact.id]) if e.type in OUTPUT_EVENTS]
        for execution_id in writers:
            for context in store.get_contexts_by_execution(execution_id):
                if context.type in RUN_CONTEXT_TYPES:
                    return context.name
    return None


def run_contexts(store) -> List[metadata_store_pb2.Context]:
    """Every run, oldest first."""
    runs = [c for kind in RUN_CONTEXT_TYPES for c in store.get_contexts_by_type(kind)]
    return sorted(runs, key=lambda c: (c.create_time_since_epoch, c.id))


def all_runs(store) -> List[RunRecord]:
    return [read(store, context) for context in run_contexts(store)]


def find(store, key: str) -> RunRecord:
    """A run by its number in `runs` (1 is the oldest; -1 the newest), its name, or a unique prefix of it."""
    runs = run_contexts(store)
    if not runs:
        raise ValueError('no runs recorded in ML Metadata yet: run the pipeline first')
    text = key.lstrip('#')
    if text.lstrip('-').isdigit() and abs(int(text)) <= len(runs) and int(text) != 0:
        number = int(text)
        return read(store, runs[number - 1 if number > 0 else number])
    matches = [c for c in runs if c.name == key] or [c for c in runs if c.name.startswith(key)]
    if len(matches) != 1:
        raise ValueError(f'{"no run" if not matches else f"{len(matches)} runs"} match {key!r}: give a number '
                         f'from `taxi-pipeline runs` (1-{len(runs)}) or a full run name')
    return read(store, matches[0])
