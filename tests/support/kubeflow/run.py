"""Executes a compiled KFP IR (PipelineSpec YAML) locally, task by task, as a
Kubeflow Pipelines backend would: test and benchmark infrastructure, not an
orchestrator. There is no KFP backend here, so this is how the tests prove that
the compiled spec and the image's entry point work together.

What every backend does alike (kubeflow/pipelines backend/src/v2, driver and
launcher; Vertex AI documents the same contract):

- tasks run in dependency order (`dependentTasks`), one subprocess each, with
  the executor container's `command` + `args`;
- `{{$}}` in the args becomes the ExecutorInput JSON: parameters in
  `inputs.parameterValues` (driver/resolve.go; the deprecated
  `inputs.parameters` is never filled), input artifacts, output artifacts with
  fresh URIs under the pipeline root and the component's declared type, and
  `outputs.outputFile` where the task writes its ExecutorOutput;
- a task's ExecutorOutput may change each output artifact's uri and metadata,
  nothing else (component/launcher_v2.go mergeRuntimeArtifacts); no file
  means the provisioned outputs stand ("output metadata file does not exist").

What differs is the backend's (`vertex.VertexBackend`,
`open_source.OpenSourceKfpBackend`): how input artifacts are typed and named,
whether `lifecycle.preCacheCheck` runs, where outputs go, and what is recorded
in ML Metadata.

The image's `python` is this interpreter: the project is installed here as it
is in the pipeline image. Each task gets the image's environment
(`image_environment`: the Dockerfile's ENV) and nothing of this process's, as
a container would.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Dict, List, Optional

import yaml


@dataclasses.dataclass
class TaskResult:
    name: str
    returncode: int
    seconds: float
    log_path: str
    outputs: Dict[str, List[dict]] = dataclasses.field(default_factory=dict)


class TaskFailed(RuntimeError):
    def __init__(self, result: TaskResult):
        with open(result.log_path) as f:
            tail = f.read()[-4000:]
        super().__init__(f'task {result.name} exited {result.returncode}; log {result.log_path}:\n{tail}')
        self.result = result


def image_environment(dockerfile: str) -> Dict[str, str]:
    """The environment a task container starts with: the image's ENV, a PATH and a HOME.

    PATH puts this interpreter's directory first, so `python` is the one the
    project is installed in, as it is in the image.
    """
    from dockerfile_parse import DockerfileParser
    env = {'PATH': os.pathsep.join([os.path.dirname(sys.executable), '/usr/bin', '/bin']), 'HOME': '/tmp'}
    env.update(DockerfileParser(path=dockerfile).envs)
    return env


def topological_order(tasks: Dict[str, dict]) -> List[str]:
    order, done = [], set()
    pending = dict(tasks)
    while pending:
        ready = sorted(name for name, task in pending.items() if set(task.get('dependentTasks', [])) <= done)
        if not ready:
            raise ValueError(f'dependency cycle among {sorted(pending)}')
        for name in ready:
            order.append(name)
            done.add(name)
            del pending[name]
    return order


def _substitute(args: List[str], executor_input: dict) -> List[str]:
    payload = json.dumps(executor_input, sort_keys=True)
    return [payload if arg == '{{$}}' else arg for arg in args]


def _local_command(command: List[str]) -> List[str]:
    return [sys.executable if command and command[0] in ('python', 'python3') else command[0]] + command[1:]


def merge_executor_output(provisioned: dict, reported: Optional[dict]) -> dict:
    """An output artifact after its task: the provisioned one with the uri and
    metadata the ExecutorOutput reported (launcher_v2.go mergeRuntimeArtifacts:
    `name`, `type` and legacy properties in the ExecutorOutput are ignored)."""
    merged = dict(provisioned, metadata=dict(provisioned.get('metadata') or {}))
    if reported:
        if reported.get('uri'):
            merged['uri'] = reported['uri']
        merged['metadata'].update(reported.get('metadata') or {})
    return merged


class KfpRun:
    """One run of a compiled spec on `backend`."""

    def __init__(self, spec_path: str, pipeline_root: str, backend, run_id: Optional[str] = None,
                 parameters: Optional[Dict[str, object]] = None, env: Optional[Dict[str, str]] = None):
        self.spec_path = spec_path
        with open(spec_path) as f:
            self.spec = yaml.safe_load(f)
        self.pipeline_root = pipeline_root
        self.pipeline_name = self.spec.get('pipelineInfo', {}).get('name', 'pipeline')
        self.run_id = run_id or str(uuid.uuid4())
        self.parameters = parameters or {}
        self.env = env
        self.backend = backend
        self.results: Dict[str, TaskResult] = {}

    def task(self, name: str) -> dict:
        return self.spec['root']['dag']['tasks'][name]

    def component(self, name: str) -> dict:
        return self.spec['components'][self.task(name)['componentRef']['name']]

    def container(self, name: str) -> dict:
        return self.spec['deploymentSpec']['executors'][self.component(name)['executorLabel']]['container']

    def parameter_values(self) -> Dict[str, object]:
        """The run's root parameters: what the run set, else the spec's defaults."""
        declared = self.spec['root'].get('inputDefinitions', {}).get('parameters', {})
        return {name: self.parameters.get(name, definition.get('defaultValue'))
                for name, definition in declared.items()}

    def task_parameters(self, name: str) -> dict:
        """`inputs.parameterValues`: constants and the run's parameters as plain JSON values."""
        values = {}
        root = self.parameter_values()
        for key, source in self.task(name).get('inputs', {}).get('parameters', {}).items():
            runtime = source.get('runtimeValue', {})
            if 'constant' in runtime:
                values[key] = runtime['constant']
            elif 'componentInputParameter' in source:
                values[key] = root[source['componentInputParameter']]
            else:
                # Schema 2.0's `constantValue` would go to `inputs.parameters`,
                # which KFP 2 never fills: the spec is compiled with schema 2.1.
                raise ValueError(f'unsupported parameter source for {name}.{key}: {source}')
        return values

    def executor_input(self, name: str) -> dict:
        outputs, output_file = self.backend.provision_outputs(self, name)
        return {
            'inputs': {'parameterValues': self.task_parameters(name),
                       'artifacts': self.backend.input_artifacts(self, name)},
            'outputs': {'artifacts': outputs, 'outputFile': output_file},
        }

    def _execute(self, container: dict, executor_input: dict, log) -> int:
        cmd = _local_command(container['command']) + _substitute(container.get('args', []), executor_input)
        log.write(f'$ {" ".join(cmd[:4])} ...\n')
        log.flush()
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env).returncode

    def run_task(self, name: str) -> TaskResult:
        container = self.container(name)
        executor_input = self.executor_input(name)
        task_root = os.path.dirname(executor_input['outputs']['outputFile'])
        os.makedirs(task_root, exist_ok=True)
        log_path = os.path.join(task_root, 'task.log')
        self.backend.task_started(self, name, executor_input)
        started = time.monotonic()
        with open(log_path, 'w') as log:
            pre_cache = container.get('lifecycle', {}).get('preCacheCheck')
            code = 0
            if pre_cache and self.backend.runs_pre_cache_check:
                code = self._execute(pre_cache, executor_input, log)
            if code == 0:
                code = self._execute(container, executor_input, log)
        result = TaskResult(name, code, time.monotonic() - started, log_path)
        if code == 0:
            output_file = executor_input['outputs']['outputFile']
            reported = {}
            if os.path.exists(output_file):
                with open(output_file) as f:
                    reported = json.load(f).get('artifacts', {})
            result.outputs = {
                key: [merge_executor_output(provisioned['artifacts'][0],
                                            (reported.get(key, {}).get('artifacts') or [None])[0])]
                for key, provisioned in executor_input['outputs']['artifacts'].items()}
        self.results[name] = result
        self.backend.task_finished(self, name, executor_input, result)
        return result

    def run(self, progress=lambda line: None) -> Dict[str, TaskResult]:
        """Runs every task; raises TaskFailed at the first failure (downstream tasks do not run)."""
        self.backend.run_started(self)
        failed = None
        for name in topological_order(self.spec['root']['dag']['tasks']):
            progress(f'{name} ...')
            result = self.run_task(name)
            progress(f'{name}: exit {result.returncode} ({result.seconds:.1f}s)')
            if result.returncode != 0:
                failed = result
                break
        self.backend.run_finished(self, failed)
        if failed:
            raise TaskFailed(failed)
        return self.results
