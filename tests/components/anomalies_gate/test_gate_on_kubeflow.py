"""The gate as a Kubeflow task meets its inputs: TFX's entry point rebuilds each
input artifact from the metadata the backend passes, and puts every custom
property in a JSON struct, not a string. The drift policy must hold there too."""

import json

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils

from components.anomalies_gate import executor, gate
from components.drift_check import drift

pytestmark = pytest.mark.unit

ANOMALIES_SCHEMA = 'title: tfx.ExampleAnomalies\ntype: object\n'
FINDING = {'feature': 'fare', 'measure': 'Jensen-Shannon divergence', 'value': 0.3, 'threshold': '0.1',
           'drifted': True}


def as_a_kubeflow_task_gets_them(tmp_path, policy):
    anomalies_uri = tmp_path / 'anomalies'
    for split in ('train', 'eval'):
        (anomalies_uri / f'Split-{split}').mkdir(parents=True)
        (anomalies_uri / f'Split-{split}' / executor.ANOMALIES_FILE).write_bytes(
            anomalies_pb2.Anomalies().SerializeToString())
    artifacts = {
        'anomalies': {'name': '7', 'uri': str(anomalies_uri), 'type': {'instanceSchema': ANOMALIES_SCHEMA},
                      'metadata': {'split_names': '["train", "eval"]'}},
        'drift_report': {'name': '8', 'uri': str(tmp_path / 'drift'), 'type': {'instanceSchema': ANOMALIES_SCHEMA},
                         'metadata': {'split_names': '["train"]', drift.VERDICT: drift.DRIFT, drift.POLICY: policy,
                                      drift.BASELINE_VERSION: '1700000000', drift.DRIFTED_FEATURES: 'fare',
                                      drift.DISTANCES: json.dumps([FINDING])}}}
    message = json_format.ParseDict({'inputs': {'artifacts': {k: {'artifacts': [v]} for k, v in artifacts.items()}}},
                                    pipeline_spec_pb2.ExecutorInput())
    parsed = kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(message.inputs.artifacts)
    return parsed['anomalies'][0], parsed['drift_report'][0]


def test_drift_under_the_block_policy_stops_the_run_on_kubeflow_as_locally(tmp_path):
    anomalies, drift_report = as_a_kubeflow_task_gets_them(tmp_path, drift.BLOCK)
    with pytest.raises(gate.DataDriftError, match='serving version 1700000000') as raised:
        executor.check(anomalies, drift_report)
    assert 'fare: Jensen-Shannon divergence 0.3' in str(raised.value)


def test_drift_under_the_warn_policy_passes(tmp_path):
    anomalies, drift_report = as_a_kubeflow_task_gets_them(tmp_path, drift.WARN)
    executor.check(anomalies, drift_report)
