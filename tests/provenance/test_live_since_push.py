"""What happened to a version since its push shows on every answer about it: a recorded monitoring pass
(with the monitor's own alert records) on the lineage text, page and model card."""

import shutil

import pytest

from foundation import metadata_store
from cli import main as cli
from components.drift_check.drift import FeatureDrift
from monitoring import metadata_record, monitor
from provenance import lineage as lineage_lib, lineage_page, model_card
from support.html_tables import read_tables

pytestmark = pytest.mark.e2e


WINDOW_END = 1_796_100_000_000_000  # microseconds


def _record_pass(metadata_path, base_path, version):
    """One pass over the version's traffic with a drift alert, recorded as `taxi-pipeline monitor` records it."""
    drifted = FeatureDrift('trip_start_hour', 'jensen_shannon_divergence', 0.21, '0.05', True)
    report = monitor.VersionReport(version=version, examples=500, previous_examples=0, serving_statistics=None,
                                   training_statistics=None, skew=[], drift=[drifted], prediction_drift=None,
                                   outlier_rate=0.01)
    settings = monitor.Settings(log_dir='/logs', model_base_path=base_path, end_micros=WINDOW_END,
                                window_micros=3_600_000_000, prediction_key='probabilities', outlier_key='outlier')
    report.alerts = monitor._alerts(report, settings)
    found = monitor.Pass(reports=[report], unmonitored=[])
    store = metadata_store.connect(metadata_path)
    metadata_record.record(store, found, settings, report_uri='/reports/monitor.html')
    return report.alerts


def test_a_monitoring_alert_since_the_push_is_on_the_lineage_and_the_card(versions, tmp_path, capsys):
    metadata_path = str(tmp_path / 'metadata.sqlite')
    shutil.copy(versions.metadata_path, metadata_path)
    alerts = _record_pass(metadata_path, versions.base_path, versions.drifted)
    assert alerts and alerts[0]['alert'] == 'drift'

    assert cli.main(['lineage', str(versions.drifted), '--metadata-path', metadata_path,
                     '--model-base-path', versions.base_path]) == 0
    text = capsys.readouterr().out
    assert 'Live: 1 monitoring window(s)' in text and 'drift or skew in trip_start_hour' in text

    store = metadata_store.connect(metadata_path, mode=metadata_store.READ)
    lineage = lineage_lib.trace(store, versions.base_path, versions.drifted)
    page = lineage_page.page(lineage)
    passes = read_tables(page)['Monitoring passes']
    assert len(passes) == 2 and 'trip_start_hour' in passes[1][-1]
    card = model_card.page(model_card.card(lineage, model_card.load_template()))
    assert 'Monitoring alerted' in card and 'trip_start_hour' in card
    # The version it does not concern stays without.
    first = lineage_lib.trace(store, versions.base_path, versions.first)
    assert first.live == [] and 'Monitoring alerted' not in model_card.page(
        model_card.card(first, model_card.load_template()))
