"""The command every Kubeflow task runs: TFX's container entry point, with each
input artifact's type taken from the inputs spec TFX's compiler gave the task.

Why: open-source Kubeflow Pipelines 2 hands a task its input artifacts as its
driver reads them back from ML Metadata, without their schema
(kubeflow/pipelines backend/src/v2/metadata/client.go,
GetOutputArtifactsByExecutionId: `Schema: "", // TODO(Bobgy): figure out how to
get schema`; OutputArtifact.ToRuntimeArtifact copies it into
`type.instanceSchema`). TFX 1.16's entry point reads the artifact's class from
that schema's title (kubeflow_v2_entrypoint_utils._retrieve_class_path:
`yaml.safe_load(instance_schema).get('title', ...)`) and fails on "" with
`AttributeError: 'NoneType' object has no attribute 'get'` at the first task
that has an input. Vertex AI types inputs by the consuming component's
inputDefinitions, so TFX's own tests never meet this.

TFX's compiler already passes every task `--json_serialized_inputs_spec_args`:
the component's ComponentInputsSpec, whose artifacts carry the declared
`artifactType`. This module gives each input artifact that declared type, then
runs TFX's own `kubeflow_v2_run_executor` unchanged, in this process. Nothing
in TFX's installed files is edited, and a backend that already types its
inputs (Vertex AI) gets the same types back.

Open-source KFP 2 also never runs `lifecycle.preCacheCheck` (nothing in
backend/src reads it), where TFX's compiler puts ExampleGen's driver: it
resolves `{SPAN}` in the split patterns and fingerprints the input. Without
it ExampleGen fails: "Split pattern .../span-{SPAN}/*.csv does not match any
files". So before a file-based ExampleGen's executor, when no driver has left
its ExecutorOutput at `outputs.outputFile`, this runs TFX's own driver
(tfx/orchestration/kubeflow/v2/file_based_example_gen/driver.py) on the same
input, as Vertex AI would have.

Since KFP 2.5 the open-source driver also gives every task an output TFX did
not declare: `executor-logs`, typed `schemaTitle: system.Artifact`, into
which the launcher writes the task's log (backend/src/v2/driver/driver.go
provisionOutputs, `--publish_logs` defaulting to "true"). TFX's entry point
parses every output before it imports the executor and fails on it:
"Could not import system.Artifact". The launcher, not the component, owns
that output, so it is taken out of what TFX sees; the launcher still records
it.

Outputs of the types the Kubeflow Pipelines UI renders (`system.Metrics`,
`system.HTML`, ...: components/run_views/artifacts.py) have a schema title
that is no import path, where TFX's entry point looks for the class; their
titles are added to TFX's title-to-class map (`TITLE_TO_CLASS_PATH`, which
the entry point consults first) before handing over.

Everything else the open-source driver does to an input artifact, TFX's entry
point already takes: a numeric MLMD id as `name` (hashed to an int id) and
ints turned into doubles in `metadata` (converted back to the declared INT
properties by `_parse_raw_artifact`).
"""

from __future__ import annotations

import json
import sys
from typing import Dict, List, Optional, Tuple

import yaml

INVOCATION_FLAG = '--json_serialized_invocation_args'
INPUTS_SPEC_FLAG = '--json_serialized_inputs_spec_args'
# The open-source launcher's own output on every task (driver.go provisionOutputs).
LAUNCHER_LOGS = 'executor-logs'


def _title(artifact_type: Optional[dict]) -> Optional[str]:
    """The type's title (`tfx.Examples`), or None when the type names none."""
    if not artifact_type:
        return None
    if artifact_type.get('schemaTitle'):
        return artifact_type['schemaTitle']
    try:
        schema = yaml.safe_load(artifact_type.get('instanceSchema') or '')
    except yaml.YAMLError:
        return None
    return schema.get('title') if isinstance(schema, dict) else None


def complete_input_types(executor_input: dict, inputs_spec: dict) -> List[str]:
    """Gives every input artifact its declared type and drops the launcher's log output, in place;
    returns one line per change.

    The declared type wins over whatever the backend passed: it is the type
    the consuming component was compiled against, which is what Vertex AI
    passes too.
    """
    declared = inputs_spec.get('artifacts', {})
    changes = []
    outputs = executor_input.get('outputs', {}).get('artifacts', {})
    logs = outputs.get(LAUNCHER_LOGS, {}).get('artifacts', [])
    if logs and all(_title(a.get('type')) == 'system.Artifact' for a in logs):
        del outputs[LAUNCHER_LOGS]
        changes.append(f'output {LAUNCHER_LOGS!r}: the launcher\'s, not the component\'s: left to the launcher')
    for key, artifact_list in executor_input.get('inputs', {}).get('artifacts', {}).items():
        if key not in declared:
            continue
        artifact_type = declared[key]['artifactType']
        want = _title(artifact_type)
        for artifact in artifact_list.get('artifacts', []):
            got = _title(artifact.get('type'))
            if got != want:
                changes.append(f'input {key!r} artifact {artifact.get("name", "?")!r}: type '
                               f'{got or "(no schema)"} -> {want} (declared by the component)')
            artifact['type'] = dict(artifact_type)
    return changes


def _flag_value(argv: List[str], flag: str) -> Tuple[Optional[int], Optional[str]]:
    """(index, value) of `flag VALUE` or `flag=VALUE` in argv; (None, None) when absent."""
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return i + 1, argv[i + 1]
        if arg.startswith(flag + '='):
            return i, arg[len(flag) + 1:]
    return None, None


def typed_argv(argv: List[str]) -> Tuple[List[str], List[str]]:
    """argv with the invocation's input artifacts typed from the inputs spec; and the changes made."""
    index, invocation = _flag_value(argv, INVOCATION_FLAG)
    _, spec = _flag_value(argv, INPUTS_SPEC_FLAG)
    if index is None or not spec:
        return list(argv), []
    executor_input: Dict = json.loads(invocation)
    changes = complete_input_types(executor_input, json.loads(spec))
    argv = list(argv)
    payload = json.dumps(executor_input)
    argv[index] = payload if argv[index] == invocation else f'{INVOCATION_FLAG}={payload}'
    return argv, changes


def needs_example_gen_driver(argv: List[str]) -> bool:
    """Whether this task is a file-based ExampleGen whose driver (preCacheCheck) has not run."""
    from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
    from tfx.dsl.io import fileio
    from tfx.utils import import_utils

    _, class_path = _flag_value(argv, '--executor_class_path')
    _, invocation = _flag_value(argv, INVOCATION_FLAG)
    if not class_path or not invocation:
        return False
    executor = import_utils.import_class_by_path(class_path)
    output_file = json.loads(invocation).get('outputs', {}).get('outputFile')
    parameters = json.loads(invocation).get('inputs', {}).get('parameterValues', {})
    return (issubclass(executor, BaseExampleGenExecutor) and 'input_base' in parameters
            and bool(output_file) and not fileio.exists(output_file))


def run_example_gen_driver(argv: List[str]) -> None:
    """TFX's file-based ExampleGen driver on this task's input: writes the resolved span,
    fingerprint and split patterns to `outputs.outputFile`, where TFX's entry point reads them."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.file_based_example_gen import driver

    _, invocation = _flag_value(argv, INVOCATION_FLAG)
    _, spec = _flag_value(argv, INPUTS_SPEC_FLAG)
    executor_input = json_format.Parse(invocation, pipeline_spec_pb2.ExecutorInput(), ignore_unknown_fields=True)
    inputs_spec = (json_format.Parse(spec, pipeline_spec_pb2.ComponentInputsSpec(), ignore_unknown_fields=True)
                   if spec else None)
    driver._run_driver(executor_input, inputs_spec)  # noqa: SLF001  (its main() only parses flags first)


def register_artifact_titles() -> None:
    """The Kubeflow UI's types (`system.Metrics`, ...) in TFX's title-to-class map, where the entry point
    looks first: their titles are no import path."""
    from tfx.orchestration.kubeflow.v2 import compiler_utils

    from components.run_views.artifacts import TITLES
    compiler_utils.TITLE_TO_CLASS_PATH.update(TITLES)


def main(argv: Optional[List[str]] = None) -> None:
    from absl import app
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

    register_artifact_titles()
    argv, changes = typed_argv(list(sys.argv if argv is None else argv))
    for line in changes:
        print(f'container_entrypoint: {line}', file=sys.stderr, flush=True)
    if needs_example_gen_driver(argv):
        print('container_entrypoint: no ExampleGen driver ran before this task (open-source KFP does not run '
              'lifecycle.preCacheCheck): running it here', file=sys.stderr, flush=True)
        run_example_gen_driver(argv)
    sys.argv = argv
    # TFX's own entry point, exactly as its module's __main__ runs it.
    app.run(kubeflow_v2_run_executor.main, flags_parser=kubeflow_v2_run_executor._parse_flags)  # noqa: SLF001


if __name__ == '__main__':
    main()
