"""Executes a compiled KFP IR (PipelineSpec YAML) locally, as KFP's v2 backend would.

Not an orchestrator: the tests and `benchmarks/kfp_benchmark.py` use it to
prove that the compiled spec and TFX's container entry points work together,
with no KFP backend at hand. It mirrors the contract of kubeflow/pipelines `backend/src/v2` (driver and
launcher):

- tasks run in dependency order (`dependentTasks`), one subprocess each, with
  the executor container's `command` + `args`;
- `{{$}}` in the args becomes the ExecutorInput JSON: `inputs.parameterValues`
  from the task's constant or pipeline parameters, `inputs.artifacts` from
  upstream outputs, `outputs.artifacts` with fresh URIs under the pipeline
  root and the component's artifact type (`instanceSchema`, whose `title` is
  the TFX type, e.g. `tfx.Examples`), and `outputs.outputFile` where the task
  writes its ExecutorOutput;
- a `lifecycle.preCacheCheck` container (ExampleGen's span/fingerprint
  driver) runs first with the same input; its ExecutorOutput file is left in
  place, which is how the TFX entry point picks up the resolved properties;
- each task's ExecutorOutput artifacts (with the metadata the executor set,
  such as `split_names` and `span`) become its downstream tasks' inputs.

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


class LocalKfpRun:
    def __init__(self, spec_path: str, pipeline_root: str, run_id: str = 'local-run',
                 parameters: Optional[Dict[str, object]] = None, env: Optional[Dict[str, str]] = None):
        with open(spec_path) as f:
            self.spec = yaml.safe_load(f)
        self.pipeline_root = pipeline_root
        self.run_id = run_id
        self.parameters = parameters or {}
        self.env = env
        self.results: Dict[str, TaskResult] = {}

    def _parameters(self, task: dict) -> tuple[dict, dict]:
        """(parameterValues, parameters) of the ExecutorInput.

        Schema 2.0 specs from TFX carry constants as the legacy
        `runtimeValue.constantValue` (a typed Value: intValue, stringValue,
        doubleValue), which the launcher passes in `inputs.parameters`; newer
        `runtimeValue.constant` and pipeline parameters go to
        `inputs.parameterValues` as plain JSON values.
        """
        values, legacy = {}, {}
        root_params = self.spec['root'].get('inputDefinitions', {}).get('parameters', {})
        for key, source in task.get('inputs', {}).get('parameters', {}).items():
            runtime = source.get('runtimeValue', {})
            if 'constantValue' in runtime:
                legacy[key] = runtime['constantValue']
            elif 'constant' in runtime:
                values[key] = runtime['constant']
            elif 'componentInputParameter' in source:
                name = source['componentInputParameter']
                values[key] = self.parameters.get(name, root_params.get(name, {}).get('defaultValue'))
            else:
                raise ValueError(f'unsupported parameter source for {key}: {source}')
        return values, legacy

    def _input_artifacts(self, task: dict, component: dict) -> dict:
        """Upstream outputs, typed by this component's input definitions.

        The launcher reads input artifacts back from ML Metadata and types them
        by the consuming component's `inputDefinitions`, not by what the
        producer's ExecutorOutput said (TFX leaves `type` out of it).
        """
        definitions = component.get('inputDefinitions', {}).get('artifacts', {})
        artifacts = {}
        for key, source in task.get('inputs', {}).get('artifacts', {}).items():
            upstream = source['taskOutputArtifact']
            produced = self.results[upstream['producerTask']].outputs[upstream['outputArtifactKey']]
            artifacts[key] = {'artifacts': [dict(a, type=definitions[key]['artifactType']) for a in produced]}
        return artifacts

    def _output_artifacts(self, name: str, component: dict) -> dict:
        outputs = {}
        for key, definition in component.get('outputDefinitions', {}).get('artifacts', {}).items():
            outputs[key] = {'artifacts': [{
                'name': f'{self.run_id}/{name}/{key}',
                'type': definition['artifactType'],
                'uri': os.path.join(self.pipeline_root, self.run_id, name, key),
                'metadata': {},
            }]}
        return outputs

    def executor_input(self, name: str) -> dict:
        task = self.spec['root']['dag']['tasks'][name]
        component = self.spec['components'][task['componentRef']['name']]
        task_root = os.path.join(self.pipeline_root, self.run_id, name)
        values, legacy = self._parameters(task)
        return {
            'inputs': {'parameterValues': values, 'parameters': legacy, 'artifacts': self._input_artifacts(task, component)},
            'outputs': {'artifacts': self._output_artifacts(name, component),
                        'outputFile': os.path.join(task_root, 'executor_output.json')},
        }

    def _execute(self, name: str, container: dict, executor_input: dict, log) -> int:
        cmd = _local_command(container['command']) + _substitute(container.get('args', []), executor_input)
        log.write(f'$ {" ".join(cmd[:4])} ...\n')
        log.flush()
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env).returncode

    def run_task(self, name: str) -> TaskResult:
        task = self.spec['root']['dag']['tasks'][name]
        component = self.spec['components'][task['componentRef']['name']]
        container = self.spec['deploymentSpec']['executors'][component['executorLabel']]['container']
        executor_input = self.executor_input(name)
        task_root = os.path.dirname(executor_input['outputs']['outputFile'])
        os.makedirs(task_root, exist_ok=True)
        log_path = os.path.join(task_root, 'task.log')
        started = time.monotonic()
        with open(log_path, 'w') as log:
            pre_cache = container.get('lifecycle', {}).get('preCacheCheck')
            code = self._execute(name, pre_cache, executor_input, log) if pre_cache else 0
            if code == 0:
                code = self._execute(name, container, executor_input, log)
        result = TaskResult(name, code, time.monotonic() - started, log_path)
        if code == 0:
            # Like KFP's launcher: no ExecutorOutput file means the declared outputs stand.
            output_file = executor_input['outputs']['outputFile']
            executor_output = {}
            if os.path.exists(output_file):
                with open(output_file) as f:
                    executor_output = json.load(f)
            declared = executor_input['outputs']['artifacts']
            # The executor reports every output with its final metadata; fall
            # back to the declared artifact for outputs it did not report.
            result.outputs = {key: executor_output.get('artifacts', {}).get(key, declared[key])['artifacts']
                              for key in declared}
        self.results[name] = result
        return result

    def run(self, progress=lambda line: None) -> Dict[str, TaskResult]:
        """Runs every task; raises TaskFailed at the first failure (downstream tasks do not run)."""
        for name in topological_order(self.spec['root']['dag']['tasks']):
            progress(f'{name} ...')
            result = self.run_task(name)
            progress(f'{name}: exit {result.returncode} ({result.seconds:.1f}s)')
            if result.returncode != 0:
                raise TaskFailed(result)
        return self.results
