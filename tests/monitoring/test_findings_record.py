"""What a pass's findings become: a feature with several tests is recorded by the one that matters, every
test kept beside it; the estimate before labels is recorded with the findings, shown in the report beside
the realised values, on the version's summary line, and `--attribution-sample` reaches the pass."""

import json
import types

import pytest

from components.drift_check.drift import FeatureDrift
from monitoring import metadata_record

pytestmark = pytest.mark.unit


def test_a_breach_of_one_test_is_not_hidden_by_another_tests_value():
    shape = FeatureDrift('fare', 'Jensen-Shannon divergence', 0.30, '0.1', True)
    amount = FeatureDrift('fare', 'Wasserstein / IQR', 0.05, '0.2', False)
    quiet = FeatureDrift('trip_seconds', 'Wasserstein / IQR', 0.01, '0.2', False)
    report = types.SimpleNamespace(skew=[shape, amount, quiet], drift=[amount, shape], prediction_drift=None,
                                   alerts=[], estimation=None)
    found = json.loads(metadata_record._findings(report))
    assert found['skew']['fare'] == [0.3, '0.1'] and found['drift']['fare'] == [0.3, '0.1']
    assert found['skew']['trip_seconds'] == [0.01, '0.2']
    assert found['skew_tests']['fare'] == {'Jensen-Shannon divergence': [0.3, '0.1', True],
                                           'Wasserstein / IQR': [0.05, '0.2', False]}


def test_without_a_breach_the_test_nearest_its_threshold_is_recorded():
    far = FeatureDrift('fare', 'Jensen-Shannon divergence', 0.05, '0.1', False)
    near = FeatureDrift('fare', 'Wasserstein / IQR', 0.19, '0.2', False)
    report = types.SimpleNamespace(skew=[far, near], drift=[], prediction_drift=None, alerts=[], estimation=None)
    assert json.loads(metadata_record._findings(report))['skew']['fare'] == [0.19, '0.2']


# -- the estimate before labels, wherever a pass reports: its record, its report, its summary line ------------

def _metric(name, value, interval, reference=0.9):
    from monitoring import performance_estimation as estimation
    return estimation.MetricEstimate(name, value, interval, 0.01, reference)


def _findings(labelled=True, attributions=True):
    """A version's findings: accuracy 0.8123 [0.7912, 0.8345] and AUC 0.9012 [0.8811, 0.9204] estimated on 750
    served examples; with labels, 0.7351 accuracy realised on 300 of them, below the interval estimated for
    them (concept drift) and a label rate of 0.5 against 0.222 (label drift)."""
    from monitoring import attribution_drift, before_labels, label_drift, performance_estimation as estimation
    served = estimation.Estimate(750, 0.31, _metric('accuracy', 0.8123, (0.7912, 0.8345), 0.8884),
                                 _metric('auc', 0.9012, (0.8811, 0.9204), 0.9467))
    if not labelled:
        return before_labels.Findings(served)
    on_labelled = estimation.Estimate(300, 0.3, _metric('accuracy', 0.8234, (0.7901, 0.8567), 0.8884),
                                      _metric('auc', 0.9102, (0.8803, 0.9371), 0.9467))
    comparisons = [estimation.Comparison('accuracy', 0.8234, (0.7901, 0.8567), 0.7351),
                   estimation.Comparison('auc', 0.9102, (0.8803, 0.9371), 0.9011)]
    moved = label_drift.label_drift([1] * 150 + [0] * 150, 0.222, 4966)
    concept = label_drift.concept_drift(comparisons, on_labelled, inputs_drifted=False)
    reference = types.SimpleNamespace(mean_abs={'fare': 0.2, 'trip_miles': 0.1, 'payment_type': 0.3})
    attributed = (attribution_drift.compare({'fare': 0.45, 'trip_miles': 0.11, 'payment_type': 0.29}, 500, reference)
                  if attributions else None)
    return before_labels.Findings(served, on_labelled, comparisons, moved, concept, attributed)


def _version_report(estimation, examples=750):
    from monitoring import monitor
    return monitor.VersionReport(7, examples, 0, None, None, [], [], None, 0.01, estimation=estimation)


def _settings(**changes):
    from monitoring import monitor
    return monitor.Settings('logs', 'models', 0, 3600, 'probabilities', 'is_outlier', **changes)


def test_the_estimate_is_recorded_with_the_findings_and_the_other_keys_keep_their_shape():
    found = _findings()
    recorded = json.loads(metadata_record._findings(types.SimpleNamespace(
        skew=[], drift=[], prediction_drift=None, alerts=[{'alert': 'concept_drift'}], estimation=found)))
    assert recorded['estimation'] == json.loads(json.dumps(found.record()))
    assert recorded['estimation']['estimate']['accuracy'] == {'estimated': 0.8123, 'interval': [0.7912, 0.8345],
                                                              'sampling_error': 0.01, 'reference': 0.8884}
    assert recorded['estimation']['estimate']['examples'] == 750
    assert [c['realised'] for c in recorded['estimation']['labelled']] == [0.7351, 0.9011]
    assert recorded['estimation']['label_drift']['label_rate'] == 0.5
    assert recorded['estimation']['concept_drift']['below_estimate'] == ['accuracy']
    assert recorded['estimation']['attribution_drift']['changes']['fare'] == 1.25
    assert {k: recorded[k] for k in ('skew', 'drift', 'prediction_drift', 'alerts')} == {
        'skew': {}, 'drift': {}, 'prediction_drift': None, 'alerts': [{'alert': 'concept_drift'}]}
    # A version without a calibration records None, as before it had one.
    unestimated = types.SimpleNamespace(skew=[], drift=[], prediction_drift=None, alerts=[], estimation=None)
    assert json.loads(metadata_record._findings(unestimated))['estimation'] is None


def _page(*reports, settings=None):
    from monitoring import monitor, report
    return report.render(monitor.Pass(list(reports), []), settings or _settings(), 'a window')


def test_the_report_shows_the_estimate_beside_the_realised_values_and_the_drifts():
    page = _page(_version_report(_findings()), settings=_settings(attribution_sample=500))
    section = page.split('Before labels')[1].split('Live metrics')[0]
    # Estimated (all served, then the labelled ones) and realised, each with its interval, in the table...
    for text in ('0.8123', '0.791 to 0.835', '0.8234', '0.790 to 0.857', '0.7351', 'NO, below', '0.9011', 'yes'):
        assert f'<td>{text}</td>' in section, text
    # ... and drawn: a chart per metric, a dot on a whisker per estimate and a dot per realised value.
    assert section.count('<svg') >= 2 + 1 + 1  # accuracy, AUC, the label rates, the attribution changes
    assert '0.812 [0.791, 0.835]' in section and '>0.735</text>' in section
    assert 'Label drift' in section and '0.500 (150 of 300)' in section and '0.222 (of 4966)' in section
    assert 'Concept drift: accuracy realised 0.735 below its interval 0.790 to 0.857' in section
    assert 'Attribution drift: 500 served rows explained' in section and '<span class="bad">fare</span>' in section


def test_the_report_says_in_one_line_what_could_not_be_estimated():
    without = _page(_version_report(None))
    section = without.split('Before labels')[1].split('Live metrics')[0]
    assert 'No estimate: the version carries no calibration' in section and '<table' not in section
    before = _page(_version_report(_findings(labelled=False)))
    section = before.split('Before labels')[1].split('Live metrics')[0]
    assert '<td>0.8123</td>' in section and 'realised' not in section.split('<table')[1].split('</table>')[0]
    assert 'Attribution drift: not checked (<code>--attribution-sample</code> is 0)' in section
    # A version here only for feedback on answers served before the window has nothing to estimate.
    assert 'Before labels' not in _page(_version_report(None, examples=0))


def test_the_summary_line_shows_the_estimate_and_then_what_the_labels_said():
    from monitoring import commands
    assert commands._estimate_text(_version_report(_findings())) == \
        'estimated accuracy 0.812 [0.791, 0.835], AUC 0.901 [0.881, 0.920], '
    assert commands._estimate_text(_version_report(None)) == 'no estimate (the version carries no calibration), '
    assert commands._labelled_text(_version_report(_findings(labelled=False))) == ''
    labelled = commands._labelled_text(_version_report(_findings()))
    assert labelled.startswith('label drift: label rate 0.500 vs 0.222 in training (p=')
    assert '; concept drift: realised accuracy 0.735 below [0.790, 0.857]; ' in labelled
    assert labelled.endswith('; attribution drift in fare')


def test_the_attribution_sample_flag_reaches_the_settings():
    import argparse
    import datetime
    from cli import main as cli
    from monitoring import attribution_drift, commands
    assert commands.ATTRIBUTION_MIN_SAMPLE == attribution_drift.MIN_SAMPLE
    end = datetime.datetime(2027, 1, 15, 8, tzinfo=datetime.timezone.utc)
    args = cli.parser().parse_args(['monitor', '--attribution-sample', '500'])
    assert commands.settings_from(args, end, 3600).attribution_sample == 500
    assert commands.settings_from(cli.parser().parse_args(['monitor']), end, 3600).attribution_sample == 0
    for refused in ('50', 'many'):  # a sample too small would never be judged
        with pytest.raises(argparse.ArgumentTypeError):
            commands.attribution_sample(refused)
