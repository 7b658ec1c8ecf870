"""Vertex AI Pipelines as a backend for `run.KfpRun`.

As TFX's Kubeflow V2 entry point expects it (tfx/orchestration/kubeflow/v2/
container/kubeflow_v2_run_executor.py and its tests, written against Vertex):

- input artifacts are typed by the consuming component's `inputDefinitions`
  (the declared `artifactType`), named by their Vertex ML Metadata resource
  name, with the metadata their producer reported;
- `lifecycle.preCacheCheck` (ExampleGen's span/fingerprint driver) runs before
  the task, with the same ExecutorInput; its ExecutorOutput file is left at
  `outputs.outputFile`, where TFX's entry point reads the resolved properties;
- outputs go to `<root>/<run>/<task>_<id>/<key>`, the ExecutorOutput to
  `executor_output.json` beside them (the layout the entry point's comment
  gives: `{gcsOutputDirectory}/.../{task_name}_{task_uuid}/executor_output.json`).

Vertex's own ML Metadata is not emulated: the operate commands read an
open-source Kubeflow store (`open_source.py`).
"""

from __future__ import annotations

import itertools
import os
import uuid

RESOURCE = 'projects/local/locations/local/metadataStores/default/artifacts/{}'


class VertexBackend:
    runs_pre_cache_check = True

    def __init__(self):
        self._ids = itertools.count(1)
        self._task_roots = {}

    def run_started(self, run) -> None:
        pass

    def run_finished(self, run, failed) -> None:
        pass

    def _task_root(self, run, name: str) -> str:
        if name not in self._task_roots:
            self._task_roots[name] = os.path.join(run.pipeline_root, run.run_id, f'{name}_{uuid.uuid4().hex[:8]}')
        return self._task_roots[name]

    def provision_outputs(self, run, name: str):
        root = self._task_root(run, name)
        outputs = {key: {'artifacts': [{
            'name': RESOURCE.format(next(self._ids)), 'type': definition['artifactType'],
            'uri': os.path.join(root, key), 'metadata': {}}]}
            for key, definition in run.component(name).get('outputDefinitions', {}).get('artifacts', {}).items()}
        return outputs, os.path.join(root, 'executor_output.json')

    def input_artifacts(self, run, name: str) -> dict:
        definitions = run.component(name).get('inputDefinitions', {}).get('artifacts', {})
        artifacts = {}
        for key, source in run.task(name).get('inputs', {}).get('artifacts', {}).items():
            upstream = source['taskOutputArtifact']
            produced = run.results[upstream['producerTask']].outputs[upstream['outputArtifactKey']]
            artifacts[key] = {'artifacts': [dict(a, type=definitions[key]['artifactType']) for a in produced]}
        return artifacts

    def task_started(self, run, name: str, executor_input: dict) -> None:
        pass

    def task_finished(self, run, name: str, executor_input: dict, result) -> None:
        pass
