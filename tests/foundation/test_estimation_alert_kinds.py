"""The alert kinds of monitoring before labels, and which of them continuous training answers."""

import pytest

from foundation import alerts

pytestmark = pytest.mark.unit


@pytest.mark.parametrize('kind', [alerts.ESTIMATED_PERFORMANCE, alerts.LABEL_DRIFT, alerts.CONCEPT_DRIFT,
                                  alerts.ATTRIBUTION_DRIFT])
def test_each_kind_travels_as_json_and_reads_back_typed(kind):
    record = alerts.Alert(kind, 7, {'metric': 'auc', 'features': ['fare']}).record()
    again = alerts.Alert.from_record(record)
    assert (again.kind, again.model_version, again.details['metric']) == (kind, 7, 'auc')
    assert again.text().startswith(f'{kind} (version 7)')


def test_an_estimated_drop_and_moved_labels_retrain_and_attribution_drift_does_not_by_itself():
    for kind in (alerts.ESTIMATED_PERFORMANCE, alerts.LABEL_DRIFT, alerts.CONCEPT_DRIFT):
        assert kind in alerts.RETRAIN_KINDS
    assert alerts.ATTRIBUTION_DRIFT not in alerts.RETRAIN_KINDS
    assert set(alerts.RETRAIN_KINDS) <= set(alerts.KINDS)
