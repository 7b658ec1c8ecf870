"""The drift check's executor on its own: artifacts in, the drift report out."""

import json
import os

import pytest
from tfx.types import artifact_utils, standard_artifacts

from components.drift_check import drift, executor

pytestmark = pytest.mark.component


def _report(tmp_path):
    report = standard_artifacts.ExampleAnomalies()
    report.uri = str(tmp_path / 'drift_report')
    return report


def test_with_nothing_pushed_the_report_says_no_baseline(tmp_path):
    statistics, schema = standard_artifacts.ExampleStatistics(), standard_artifacts.Schema()
    report = _report(tmp_path)
    executor.check(statistics, schema, str(tmp_path / 'serving_model'), drift.WARN, report)
    assert artifact_utils.decode_split_names(report.split_names) == ['train']
    assert report.get_string_custom_property(drift.VERDICT) == drift.NO_BASELINE
    assert report.get_string_custom_property(drift.POLICY) == drift.WARN
    assert json.loads(report.get_string_custom_property(drift.DISTANCES)) == []
    assert (tmp_path / 'drift_report' / 'Split-train').is_dir()


def test_an_unknown_policy_is_refused(tmp_path):
    with pytest.raises(ValueError, match='drift_policy must be one of warn, block'):
        executor.check(standard_artifacts.ExampleStatistics(), standard_artifacts.Schema(),
                       str(tmp_path), 'ignore', _report(tmp_path))


def test_given_the_registry_a_version_it_never_recorded_is_no_drift_reference(tmp_path):
    from foundation import metadata_store
    from support.pushes import write_model
    base = str(tmp_path / 'serving_model')
    write_model(os.path.join(base, '1796551205'))  # complete, but its push never published a PushedModel
    metadata_store.connect(str(tmp_path / 'metadata.sqlite'))
    report = _report(tmp_path)
    executor.check(standard_artifacts.ExampleStatistics(), standard_artifacts.Schema(), base, drift.WARN, report,
                   metadata_connection=metadata_store.connection_parameter(str(tmp_path / 'metadata.sqlite')))
    assert report.get_string_custom_property(drift.VERDICT) == drift.NO_BASELINE
    assert drift.BASELINE_VERSION not in report.mlmd_artifact.custom_properties
