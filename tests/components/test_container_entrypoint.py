"""components/container_entrypoint.py: input artifacts as open-source KFP 2's
driver passes them (no schema, a numeric MLMD id as name, ints as doubles)
reach TFX's entry point typed as the component declared them."""

import json

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils
from tfx.types import standard_artifacts

from components import container_entrypoint

pytestmark = pytest.mark.unit

EXAMPLES_SCHEMA = ('title: tfx.Examples\ntype: object\nproperties:\n  span:\n    type: integer\n'
                   '  split_names:\n    type: string\n')
INPUTS_SPEC = {'artifacts': {'examples': {'artifactType': {'instanceSchema': EXAMPLES_SCHEMA}}},
               'parameters': {'exclude_splits': {'parameterType': 'STRING'}}}


def as_open_source_kfp_passes_it():
    # backend/src/v2/metadata/converter.go toRuntimeArtifact: name is the MLMD id,
    # every int custom property a double; client.go leaves the schema empty.
    return {'inputs': {'artifacts': {'examples': {'artifacts': [{
        'name': '42', 'uri': '/root/run/CsvExampleGen/examples',
        'type': {'instanceSchema': ''},
        'metadata': {'span': 3.0, 'split_names': '["train", "eval"]', 'version': 0.0}}]}},
        'parameterValues': {'exclude_splits': '[]'}},
        # driver.go provisionOutputs: the launcher's log output on every task (publish_logs).
        'outputs': {'artifacts': {'executor-logs': {'artifacts': [{
            'name': 'executor-logs', 'uri': '/root/run/StatisticsGen/u/executor-logs',
            'type': {'schemaTitle': 'system.Artifact'}}]}},
            'outputFile': '/root/run/StatisticsGen/u/output_metadata.json'}}


def parse_inputs(executor_input):
    message = json_format.ParseDict(executor_input, pipeline_spec_pb2.ExecutorInput(), ignore_unknown_fields=True)
    return kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(message.inputs.artifacts)


def test_tfx_alone_fails_on_the_empty_schema_open_source_kfp_passes():
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'get'"):
        parse_inputs(as_open_source_kfp_passes_it())


def test_tfx_alone_fails_on_the_launchers_log_output():
    message = json_format.ParseDict(as_open_source_kfp_passes_it(), pipeline_spec_pb2.ExecutorInput(),
                                    ignore_unknown_fields=True)
    with pytest.raises(ImportError, match='system.Artifact'):
        kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(message.outputs.artifacts)


def test_completed_inputs_load_as_the_declared_tfx_type_with_their_properties():
    executor_input = as_open_source_kfp_passes_it()
    changes = container_entrypoint.complete_input_types(executor_input, INPUTS_SPEC)
    assert len(changes) == 2 and any("'examples'" in c and 'tfx.Examples' in c for c in changes)
    assert executor_input['outputs']['artifacts'] == {}  # the launcher's log output is not TFX's
    [examples] = parse_inputs(executor_input)['examples']
    assert isinstance(examples, standard_artifacts.Examples)
    assert examples.span == 3 and isinstance(examples.span, int)
    assert json.loads(examples.split_names) == ['train', 'eval']
    assert examples.uri == '/root/run/CsvExampleGen/examples'


def test_a_backend_that_already_types_inputs_gets_the_same_type_and_no_change_reported():
    executor_input = as_open_source_kfp_passes_it()
    executor_input['inputs']['artifacts']['examples']['artifacts'][0]['type'] = {'instanceSchema': EXAMPLES_SCHEMA}
    del executor_input['outputs']['artifacts']['executor-logs']
    assert container_entrypoint.complete_input_types(executor_input, INPUTS_SPEC) == []
    [examples] = parse_inputs(executor_input)['examples']
    assert isinstance(examples, standard_artifacts.Examples)


@pytest.mark.parametrize('joined', [False, True])
def test_argv_gets_the_typed_invocation_in_either_flag_form(joined):
    invocation = json.dumps(as_open_source_kfp_passes_it())
    spec = json.dumps(INPUTS_SPEC)
    flag = container_entrypoint.INVOCATION_FLAG
    head = ['prog', '--executor_class_path', 'x.Executor']
    argv = head + ([f'{flag}={invocation}'] if joined else [flag, invocation]) + [
        container_entrypoint.INPUTS_SPEC_FLAG, spec, '--runner=DirectRunner']
    typed, changes = container_entrypoint.typed_argv(argv)
    assert len(changes) == 2 and len(typed) == len(argv) and typed[-1] == '--runner=DirectRunner'
    _, value = container_entrypoint._flag_value(typed, flag)
    [artifact] = json.loads(value)['inputs']['artifacts']['examples']['artifacts']
    assert artifact['type'] == {'instanceSchema': EXAMPLES_SCHEMA}


def test_without_an_inputs_spec_argv_is_left_as_it_is():
    argv = ['prog', container_entrypoint.INVOCATION_FLAG, json.dumps(as_open_source_kfp_passes_it())]
    assert container_entrypoint.typed_argv(argv) == (argv, [])


@pytest.mark.parametrize('title', ['system.Metrics', 'system.ClassificationMetrics', 'system.HTML', 'system.Markdown'])
def test_outputs_of_the_kubeflow_ui_types_load_as_the_run_views_classes(monkeypatch, title):
    from tfx.orchestration.kubeflow.v2 import compiler_utils

    from components.run_views import artifacts
    monkeypatch.setattr(compiler_utils, 'TITLE_TO_CLASS_PATH', dict(compiler_utils.TITLE_TO_CLASS_PATH))
    view = {'name': 'view', 'uri': '/root/run/RunViews/u/view',
            'type': {'instanceSchema': f'title: {title}\ntype: object\n'}}
    outputs = json_format.ParseDict({'outputs': {'artifacts': {'view': {'artifacts': [view]}}}},
                                    pipeline_spec_pb2.ExecutorInput()).outputs.artifacts
    with pytest.raises(ImportError, match=title):  # TFX alone: the title is taken for an import path
        kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(outputs)
    container_entrypoint.register_artifact_titles()
    [view] = kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(outputs)['view']
    assert type(view).TYPE_NAME == title and type(view).__module__ == artifacts.__name__
