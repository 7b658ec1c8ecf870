"""The drift check's executor on its own: artifacts in, the drift report out."""

import json

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
