"""Labelled serving traffic becomes the next span: the rows the requests carried, with
the tips fed back, in the pipeline's CSV layout, passing the curated schema; outliers,
label-only and unknown feedback left out and counted; nothing exported twice."""

import csv
import json
import os
import re

import pytest
import tensorflow_data_validation as tfdv

import schemas
from cli import main as cli
from monitoring import feedback_span
from pipeline import data
from serving import feedback
from support.log_times import END

pytestmark = pytest.mark.e2e


@pytest.fixture
def labelled(served, traffic, tmp_path):
    """A data root with span 1, clean and units-bug traffic in the log, and feedback for both."""
    data.prepare_sample(str(tmp_path / 'data'), rows=100)
    logs, store = tmp_path / 'logs', tmp_path / 'feedback'
    clean, broken = traffic['clean later'][:300], traffic['units bug'][:100]
    served(logs, clean, END - 60_000_000, 'clean')
    served(logs, broken, END - 60_000_000, 'broken')  # fares in cents: flagged as outliers when served
    records = [{'request_id': 'clean', 'example': i, 'tips': float(r['tips'])} for i, r in enumerate(clean)
               if r['tips']]
    records += [{'request_id': 'broken', 'example': i, 'tips': 1.0} for i in range(100)]
    records += [{'request_id': 'clean', 'example': 299, 'label': 1}]  # replaced below if it had tips
    records = list({(r['request_id'], r['example']): r for r in records}.values())
    records.append({'request_id': 'ghost', 'example': 0, 'tips': 2.0})
    feedback.FeedbackStore(str(store)).append(feedback.parse_all(records), source='test')
    return tmp_path, clean, broken


def _command(tmp_path):
    return ['feedback-span', '--feedback-dir', str(tmp_path / 'feedback'), '--request-log-dir',
            str(tmp_path / 'logs'), '--data-root', str(tmp_path / 'data')]


def test_the_span_holds_the_served_rows_with_their_tips_and_passes_the_schema(labelled, capsys):
    tmp_path, clean, _ = labelled
    assert cli.main(_command(tmp_path)) == 0
    out = capsys.readouterr().out
    span_dir = tmp_path / 'data' / 'span-2'
    assert data.check_data_root(str(tmp_path / 'data')) == str(span_dir)
    with open(span_dir / 'data.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    with_tips = [r for r in clean[:299] if r['tips']]
    left = {reason: int(count) for count, reason in re.findall(r'left out: (\d+) \((.+)\)', out)}
    # The broken rows are all flagged; a few clean ones too (the threshold flags ~1% of training data).
    assert left['flagged as an outlier when served'] >= 100 and left['no logged request'] == 1
    assert 'label only (the CSV layout records tips)' in left
    clean_flagged = left['flagged as an outlier when served'] - 100
    assert clean_flagged <= 0.03 * len(with_tips)
    assert len(rows) == len(with_tips) - clean_flagged - left.get('missing a column the schema requires', 0)
    sent = iter(with_tips)
    for written in rows:  # in the order served, each the row a request carried, with its tips
        match = next(r for r in sent if r['fare'] and float(written['fare']) == pytest.approx(float(r['fare']),
                                                                                           rel=1e-6)
                     and written['payment_type'] == r['payment_type'] and written['company'] == r['company'])
        assert float(written['tips']) == pytest.approx(float(match['tips']), rel=1e-6)
        assert int(written['trip_start_timestamp']) == END // 1_000_000 - 60
    manifest = json.loads((span_dir / feedback_span.MANIFEST).read_text())
    assert len(manifest['examples']) == len(rows)

    # What the pipeline's gate would see: no anomaly against the curated schema.
    stats = tfdv.generate_statistics_from_csv(str(span_dir / 'data.csv'))
    anomalies = tfdv.validate_statistics(stats, tfdv.load_schema_text(schemas.CURATED_SCHEMA),
                                         environment='TRAINING')
    assert dict(anomalies.anomaly_info) == {}


def test_nothing_is_exported_twice(labelled, capsys):
    tmp_path, _, _ = labelled
    assert cli.main(_command(tmp_path)) == 0
    capsys.readouterr()
    assert cli.main(_command(tmp_path)) == cli.EXIT_BAD_INPUT
    assert 'already exported' in capsys.readouterr().err
    assert not (tmp_path / 'data' / 'span-3').exists()


def test_an_export_a_crash_interrupted_leaves_no_span(labelled, monkeypatch):
    tmp_path, _, _ = labelled

    def crash(*args):
        raise OSError('killed')
    monkeypatch.setattr(os, 'rename', crash)
    with pytest.raises(OSError):
        cli_args = cli.parser().parse_args(_command(tmp_path))
        cli_args.handler(cli_args)
    assert [span for span, _ in data.span_dirs(str(tmp_path / 'data'))] == [1]
    monkeypatch.undo()
    assert cli.main(_command(tmp_path)) == 0  # the next export starts over
    assert [span for span, _ in data.span_dirs(str(tmp_path / 'data'))] == [1, 2]
