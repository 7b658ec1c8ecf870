"""Open-source Kubeflow Pipelines 2 as a backend for `run.KfpRun`: its driver
and launcher as kubeflow/pipelines backend/src/v2 implements them, recording
into ML Metadata over its gRPC API as a cluster's `metadata-grpc-service` is
reached. Pointers are to that tree (read at commit 7b70c7b9).

Driver (driver/root_dag.go, driver/container.go, driver/resolve.go):
- the run's contexts: `system.Pipeline` named by the pipeline, and
  `system.PipelineRun` named by the run id with `namespace`, `resource_name`,
  `pipeline_root` (`<root>/<pipeline>/<run>`) and `store_session_info`, a child
  of the pipeline context (metadata/client.go GetPipeline);
- the root `system.DAGExecution`, named `run/<run id>`, with the run's
  parameters in `inputs`;
- per task a `system.ContainerExecution`, RUNNING, in both contexts, with
  `display_name`, `task_name`, `parent_dag_id`, `image`, `inputs` (the
  parameter values), `cache_fingerprint` when the task caches, empty pod
  fields, and one INPUT event per input artifact, path = the input key
  (client.go CreateExecution);
- input artifacts read back from ML Metadata by the producer's OUTPUT events
  (client.go GetOutputArtifactsByExecutionId): `name` the artifact's numeric
  id, `type` `{instanceSchema: ""}` (`Schema: "", // TODO(Bobgy)`),
  `metadata` every property and custom property with ints as doubles
  (converter.go toRuntimeArtifact);
- outputs provisioned at `<root>/<pipeline>/<run>/<task>/<uuid>/<key>`,
  named by their key and typed as declared, plus the launcher's own
  `executor-logs` (`schemaTitle: system.Artifact`, `--publish_logs` defaults
  to "true"); the ExecutorOutput file is `output_metadata.json` in the task
  root (driver.go provisionOutputs);
- `lifecycle.preCacheCheck` is never run: nothing in backend/src reads it.

Launcher (component/launcher_v2.go):
- fills the pod fields (`pod_name`, `pod_uid`, `namespace`) on the execution
  before the command runs (PrePublishExecution);
- writes the task's log to `executor-logs` (getLogWriter);
- records each output artifact (only `executor-logs` when the task failed)
  LIVE under the type named by its schema title, registered with no
  properties (metadata/converter.go SchemaToArtifactType: "TODO: Also parse
  properties"), no MLMD `name`, and the merged metadata as
  custom properties: numbers as doubles, bools as ints, lists and dicts as
  `{"list": ...}`/`{"struct": ...}` structs, `display_name` = the output key,
  `store_session_info`; null is refused (StructValueToMLMDValue);
- publishes the execution COMPLETE (or FAILED) with one OUTPUT event per
  artifact, path = the output key (client.go PublishExecution); the DAG's
  state follows its children (UpdateDAGExecutionsState).

Not emulated: the cache lookup (it asks the KFP API server; every task runs,
as with caching disabled), object-store upload/download (the root is a local
path, which the container reads as it is), pods.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from typing import Dict, List, Optional

import yaml
from google.protobuf import json_format
from ml_metadata.proto import metadata_store_pb2 as pb

PIPELINE_CONTEXT = 'system.Pipeline'
RUN_CONTEXT = 'system.PipelineRun'
CONTAINER_EXECUTION = 'system.ContainerExecution'
DAG_EXECUTION = 'system.DAGExecution'
NAMESPACE = 'kubeflow'
LOGS = 'executor-logs'
# objectstore.SessionInfo of the run's bucket, as JSON; the root here is a local path.
SESSION_INFO = json.dumps({'Provider': 'local', 'Params': {}})


def schema_title(artifact_type: dict) -> str:
    """The MLMD type name of an artifact type: its schema's title
    (launcher_v2.go getArtifactSchema, then SchemaToArtifactType)."""
    if artifact_type.get('schemaTitle'):
        return artifact_type['schemaTitle']
    schema = yaml.safe_load(artifact_type.get('instanceSchema') or '') or {}
    if not schema.get('title'):
        raise ValueError('No title specified')  # glog.Fatal in the launcher
    return schema['title']


def to_mlmd_value(value) -> pb.Value:
    """StructValueToMLMDValue (metadata/converter.go)."""
    result = pb.Value()
    if isinstance(value, bool):
        result.int_value = int(value)
    elif isinstance(value, (int, float)):
        result.double_value = float(value)
    elif isinstance(value, str):
        result.string_value = value
    elif isinstance(value, list):
        json_format.ParseDict({'list': value}, result.struct_value)
    elif isinstance(value, dict):
        json_format.ParseDict({'struct': value}, result.struct_value)
    else:
        raise ValueError(f'unknown/unsupported value type: {value!r}')
    return result


def to_runtime_value(value: pb.Value):
    """toRuntimeArtifact's conversion of one property (metadata/converter.go)."""
    kind = value.WhichOneof('value')
    if kind == 'string_value':
        return value.string_value
    if kind == 'double_value':
        return value.double_value
    if kind == 'int_value':
        return float(value.int_value)
    if kind == 'struct_value':
        return json_format.MessageToDict(value.struct_value)
    raise ValueError(f'unknown property type in MLMD artifact: {kind}')


def to_runtime_artifact(artifact: pb.Artifact) -> dict:
    """An input artifact as the driver passes it (OutputArtifact.ToRuntimeArtifact with Schema "")."""
    metadata = {key: to_runtime_value(value) for key, value in artifact.properties.items()}
    metadata.update({key: to_runtime_value(value) for key, value in artifact.custom_properties.items()})
    return {'name': str(artifact.id), 'uri': artifact.uri, 'metadata': metadata, 'type': {'instanceSchema': ''}}


def _struct(values: Dict[str, object]) -> pb.Value:
    result = pb.Value()
    json_format.ParseDict(values, result.struct_value)
    return result


def _event(kind, key: str, artifact_id: Optional[int] = None) -> pb.Event:
    event = pb.Event(type=kind)
    if artifact_id is not None:
        event.artifact_id = artifact_id
    event.path.steps.add().key = key
    return event


class OpenSourceKfpBackend:
    runs_pre_cache_check = False

    def __init__(self, store):
        """`store`: an ML Metadata client, e.g. over gRPC to `metadata_service.MetadataService`."""
        self.store = store
        self.executions: Dict[str, int] = {}
        self._task_roots: Dict[str, str] = {}
        self.contexts: List[pb.Context] = []
        self.dag_execution_id: Optional[int] = None

    def _type(self, kind, name: str) -> int:
        put = {pb.ContextType: self.store.put_context_type, pb.ExecutionType: self.store.put_execution_type,
               pb.ArtifactType: self.store.put_artifact_type}[kind]
        return put(kind(name=name))  # schemaless: "so we can easily evolve the types as needed"

    def _context(self, type_name: str, name: str, properties: Dict[str, str]) -> pb.Context:
        existing = self.store.get_context_by_type_and_name(type_name, name)
        if existing is not None:
            return existing
        context = pb.Context(type_id=self._type(pb.ContextType, type_name), name=name)
        for key, value in properties.items():
            context.custom_properties[key].string_value = value
        [context.id] = self.store.put_contexts([context])
        return self.store.get_contexts_by_id([context.id])[0]

    def run_started(self, run) -> None:
        pipeline = self._context(PIPELINE_CONTEXT, run.pipeline_name, {})
        run_context = self._context(RUN_CONTEXT, run.run_id, {
            'namespace': NAMESPACE, 'resource_name': 'run-resource',  # RootDAG: "TODO(Bobgy): fill in run resource."
            'pipeline_root': os.path.join(run.pipeline_root, run.pipeline_name, run.run_id),
            'store_session_info': SESSION_INFO})
        self.store.put_parent_contexts([pb.ParentContext(child_id=run_context.id, parent_id=pipeline.id)])
        self.contexts = [pipeline, run_context]
        dag = pb.Execution(type_id=self._type(pb.ExecutionType, DAG_EXECUTION), name=f'run/{run.run_id}',
                           last_known_state=pb.Execution.RUNNING)
        dag.custom_properties['display_name'].string_value = ''
        dag.custom_properties['task_name'].string_value = ''
        dag.custom_properties['inputs'].CopyFrom(_struct(run.parameter_values()))
        dag.custom_properties['total_dag_tasks'].int_value = len(run.spec['root']['dag']['tasks'])
        self.dag_execution_id, _, _ = self.store.put_execution(dag, [], self.contexts)

    def _task_root(self, run, name: str) -> str:
        if name not in self._task_roots:
            self._task_roots[name] = os.path.join(run.pipeline_root, run.pipeline_name, run.run_id, name,
                                                  str(uuid.uuid4()))
        return self._task_roots[name]

    def provision_outputs(self, run, name: str):
        root = self._task_root(run, name)
        outputs = {key: {'artifacts': [{
            'name': key, 'uri': os.path.join(root, key), 'type': definition['artifactType'],
            'metadata': dict(definition.get('metadata', {}))}]}
            for key, definition in run.component(name).get('outputDefinitions', {}).get('artifacts', {}).items()}
        outputs[LOGS] = {'artifacts': [{'name': LOGS, 'uri': os.path.join(root, LOGS),
                                        'type': {'schemaTitle': 'system.Artifact'}, 'metadata': {}}]}
        return outputs, os.path.join(root, 'output_metadata.json')

    def output_artifacts(self, execution_id: int) -> Dict[str, List[pb.Artifact]]:
        """GetOutputArtifactsByExecutionId: the execution's outputs by their OUTPUT events' keys."""
        by_key: Dict[str, List[int]] = {}
        for event in self.store.get_events_by_execution_ids([execution_id]):
            if event.type == pb.Event.OUTPUT:
                by_key.setdefault(event.path.steps[0].key, []).append(event.artifact_id)
        return {key: self.store.get_artifacts_by_id(ids) for key, ids in by_key.items()}

    def input_artifacts(self, run, name: str) -> dict:
        artifacts = {}
        for key, source in run.task(name).get('inputs', {}).get('artifacts', {}).items():
            upstream = source['taskOutputArtifact']
            produced = self.output_artifacts(self.executions[upstream['producerTask']])
            artifacts[key] = {'artifacts': [to_runtime_artifact(a) for a in produced[upstream['outputArtifactKey']]]}
        return artifacts

    def _fingerprint(self, run, name: str, executor_input: dict) -> str:
        """cacheutils GenerateCacheKey's inputs (input artifact ids, parameter values, output specs
        without URIs, image, command and args), hashed; not byte-identical to Go's JSON."""
        container = run.container(name)
        key = {
            'inputArtifactNames': {k: [a['name'] for a in v['artifacts']]
                                   for k, v in executor_input['inputs']['artifacts'].items()},
            'inputParameterValues': executor_input['inputs']['parameterValues'],
            'outputArtifactsSpec': {k: {'name': v['artifacts'][0]['name'], 'type': v['artifacts'][0]['type']}
                                    for k, v in executor_input['outputs']['artifacts'].items()},
            'containerSpec': {'image': container['image'],
                              'cmdArgs': container['command'] + container.get('args', [])},
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

    def task_started(self, run, name: str, executor_input: dict) -> None:
        task = run.task(name)
        execution = pb.Execution(type_id=self._type(pb.ExecutionType, CONTAINER_EXECUTION),
                                 last_known_state=pb.Execution.RUNNING)
        props = execution.custom_properties
        props['display_name'].string_value = task.get('taskInfo', {}).get('name', name)
        props['task_name'].string_value = name
        props['parent_dag_id'].int_value = self.dag_execution_id
        for key in ('pod_name', 'pod_uid', 'namespace'):
            props[key].string_value = ''  # the driver does not know the pod yet
        props['image'].string_value = run.container(name)['image']
        if task.get('cachingOptions', {}).get('enableCache'):
            props['cache_fingerprint'].string_value = self._fingerprint(run, name, executor_input)
        props['inputs'].CopyFrom(_struct(executor_input['inputs']['parameterValues']))
        inputs = [(self.store.get_artifacts_by_id([int(a['name'])])[0], _event(pb.Event.INPUT, key, int(a['name'])))
                  for key, artifact_list in executor_input['inputs']['artifacts'].items()
                  for a in artifact_list['artifacts']]
        execution_id, _, _ = self.store.put_execution(execution, inputs, self.contexts)
        self.executions[name] = execution_id
        # The launcher, in the pod, before the command (PrePublishExecution).
        [execution] = self.store.get_executions_by_id([execution_id])
        execution.custom_properties['pod_name'].string_value = f'{run.pipeline_name}-{run.run_id[:5]}-{execution_id}'
        execution.custom_properties['pod_uid'].string_value = str(uuid.uuid4())
        execution.custom_properties['namespace'].string_value = NAMESPACE
        execution.last_known_state = pb.Execution.RUNNING
        self.store.put_executions([execution])

    def _record_artifact(self, key: str, artifact: dict) -> pb.Artifact:
        """RecordArtifact: LIVE, typed by schema title, metadata as custom properties."""
        record = pb.Artifact(type_id=self._type(pb.ArtifactType, schema_title(artifact['type'])), uri=artifact['uri'],
                             state=pb.Artifact.LIVE)
        for name, value in (artifact.get('metadata') or {}).items():
            if name == '_kfp_workspace':
                continue
            record.custom_properties[name].CopyFrom(to_mlmd_value(value))
        if 'display_name' not in record.custom_properties:
            record.custom_properties['display_name'].string_value = key
        if 'store_session_info' not in record.custom_properties:
            record.custom_properties['store_session_info'].string_value = SESSION_INFO
        [record.id] = self.store.put_artifacts([record])
        return record

    def task_finished(self, run, name: str, executor_input: dict, result) -> None:
        [execution] = self.store.get_executions_by_id([self.executions[name]])
        logs = executor_input['outputs']['artifacts'][LOGS]['artifacts'][0]
        shutil.copyfile(result.log_path, logs['uri'])
        produced = result.outputs if result.returncode == 0 else {LOGS: [logs]}
        outputs = []
        for key, artifacts in produced.items():
            for artifact in artifacts:
                record = self._record_artifact(key, artifact)
                outputs.append((record, _event(pb.Event.OUTPUT, key, record.id)))
        execution.last_known_state = pb.Execution.COMPLETE if result.returncode == 0 else pb.Execution.FAILED
        self.store.put_execution(execution, outputs, self.contexts)

    def run_finished(self, run, failed) -> None:
        """UpdateDAGExecutionsState: the root DAG fails with a child, completes when all complete."""
        [dag] = self.store.get_executions_by_id([self.dag_execution_id])
        children = self.store.get_executions_by_id(list(self.executions.values()))
        total = dag.custom_properties['total_dag_tasks'].int_value
        if any(c.last_known_state == pb.Execution.FAILED for c in children):
            dag.last_known_state = pb.Execution.FAILED
        elif sum(c.last_known_state == pb.Execution.COMPLETE for c in children) == total:
            dag.last_known_state = pb.Execution.COMPLETE
        self.store.put_executions([dag])


