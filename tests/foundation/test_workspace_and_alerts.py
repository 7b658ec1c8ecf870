"""The workspace's layout as one object; alerts typed, their recorded form read back."""

import json

import pytest

from foundation import alerts, durations
from foundation.workspace import Workspace

pytestmark = pytest.mark.unit


def test_every_path_lives_under_the_workspace(tmp_path):
    ws = Workspace(str(tmp_path / 'ws'))
    paths = [ws.data_root, ws.pipeline_root, ws.metadata_path, ws.model_base_path, ws.request_log_dir,
             ws.feedback_dir, ws.report_dir]
    assert len(set(paths)) == len(paths)
    assert all(p.startswith(ws.root + '/') for p in paths)
    assert Workspace('relative').absolute().root.startswith('/')


def test_an_alert_travels_as_json_and_reads_back_typed():
    alert = alerts.Alert(alerts.DRIFT, 7, {'features': ['fare'], 'distances': {'fare': 0.21}})
    recorded = json.loads(json.dumps(alert.record()))
    assert recorded['alert'] == 'drift' and recorded['model_version'] == 7
    back = alerts.Alert.from_record(recorded)
    assert back == alert and back.features == ['fare']
    assert back.text().startswith('drift (version 7): ')


def test_an_unknown_kind_is_not_raised_but_still_reads():
    with pytest.raises(ValueError, match='unknown alert kind'):
        alerts.Alert('drfit', 7)
    assert alerts.Alert.from_record({'alert': 'from_the_future', 'model_version': 3}).kind == 'from_the_future'
    assert alerts.Alert.from_record('a bare line').text() == 'a bare line'
    kinds, features = alerts.kinds_and_features([{'alert': 'skew', 'features': ['tips']}, 'odd',
                                                 {'alert': 'live_metric', 'metric': 'auc'}])
    assert kinds == ['live_metric', 'odd', 'skew'] and features == ['tips']


def test_durations():
    assert durations.parse_duration('90s', '--poll') == 90 and durations.parse_duration('6h', '--cooldown') == 21600
    for bad in ('', '6 h', '0m', '1w'):
        with pytest.raises(ValueError, match='--cooldown'):
            durations.parse_duration(bad, '--cooldown')
