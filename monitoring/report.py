"""The monitoring report: one self-contained HTML page per monitoring pass, gathered
here and laid out by `reports` (templates/monitoring.html).

Per version: its alerts, and the checks that could not run and why; skew and
drift distances against their thresholds, a row per test (charts); each
compared feature's training and serving distributions side by side; the
outlier rate and the prediction's drift; before labels, the accuracy and AUC
estimated from the calibration the version carries, beside the realised values
once labels came, with label, concept and attribution drift; live metrics from
feedback with their confidence intervals and a calibration plot; and what in
the feedback store could not be joined.
"""

import dataclasses
import datetime
import os
from typing import List, Optional

from tensorflow_metadata.proto.v0 import statistics_pb2

from components.drift_check.drift import test_name
from foundation.alerts import NotChecked, alert_text
from foundation.atomic_file import write_atomically
from monitoring.monitor import Pass, Settings, VersionReport
from reports import page as reports_page

def _feature(stats: Optional[statistics_pb2.DatasetFeatureStatisticsList], name: str):
    if stats is None or not stats.datasets:
        return None
    return next((f for f in stats.datasets[0].features if f.path.step and f.path.step[0] == name), None)


def _distribution(feature) -> dict:
    """Share of examples per top value of a categorical feature."""
    if feature is None or not feature.HasField('string_stats'):
        return {}
    total = feature.string_stats.common_stats.num_non_missing or 1
    return {v.value: v.frequency / total for v in feature.string_stats.top_values[:10]}


def _distributions(report: VersionReport, features: List[str]) -> List[dict]:
    """Numeric features on the training quantile buckets (each holds ~1/N of the training data,
    so a departure shows at a glance); categorical ones by their most frequent values."""
    found = []
    for name in features:
        if name in report.buckets:
            training = {label: t for label, (t, _) in report.buckets[name].items()}
            serving = {label: s for label, (_, s) in report.buckets[name].items()}
        else:
            training = _distribution(_feature(report.training_statistics, name))
            serving = _distribution(_feature(report.serving_statistics, name))
        found.append({'feature': name, 'training': training, 'serving': serving})
    return found


def _by_test(findings) -> list:
    """The findings, a feature with more than one test named with its test ('fare (location/scale)'), so
    that each test has its own bar and row."""
    tests = {}
    for f in findings:
        tests[f.feature] = tests.get(f.feature, 0) + 1
    return [dataclasses.replace(f, feature=f'{f.feature} ({test_name(f.measure)})') if tests[f.feature] > 1 else f
            for f in findings]


def _version(report: VersionReport, settings: Settings, history: List[dict]) -> dict:
    compared = list(dict.fromkeys([f.feature for f in report.skew] or [f.feature for f in report.drift]))
    return {'version': report.version, 'examples': report.examples, 'previous_examples': report.previous_examples,
            'alerts': [alert_text(a) for a in report.alerts], 'outlier_rate': report.outlier_rate,
            'not_checked': [NotChecked.from_record(n).text() for n in report.not_checked],
            'prediction_drift': report.prediction_drift, 'history': _history(history),
            'live': _live(report, settings), 'before_labels': _before_labels(report, settings),
            'has_training_statistics': report.training_statistics is not None,
            'skew': _by_test(report.skew), 'drift': _by_test(report.drift),
            'distributions': _distributions(report, compared)}


def _live(report: VersionReport, settings: Settings) -> Optional[dict]:
    live = report.live
    if live is None:
        return None
    judged = live.examples >= settings.min_labelled
    rows = []
    for metric, value, interval, minimum in (('AUC', live.auc, live.auc_ci, settings.min_auc),
                                             ('accuracy', live.accuracy, live.accuracy_ci, settings.min_accuracy)):
        verdict = ('n/a' if value is None else 'not judged (too few labels)' if not judged
                   else 'ALERT' if value < minimum else 'ok')
        rows.append([metric, value if value is not None else 'n/a (one class)',
                     f'{interval[0]:.3f} to {interval[1]:.3f}' if interval else 'n/a', minimum, verdict])
    rows.append(['mean prediction / observed rate', f'{live.mean_predicted:.3f} / {live.observed_rate:.3f}', '',
                 '', ''])
    rows.append(['expected calibration error', live.calibration_error, '', '', ''])
    return {'examples': live.examples, 'positives': live.positives, 'rows': rows,
            'unlabelable': report.unlabelable,
            'calibration_points': [(b.mean_predicted, b.observed_rate) for b in live.calibration],
            'calibration_rows': [[f'{b.low:.1f} to {b.high:.1f}', b.examples, b.mean_predicted, b.observed_rate]
                                 for b in live.calibration]}


def _interval(interval) -> str:
    return f'{interval[0]:.3f} to {interval[1]:.3f}' if interval else 'n/a'


def _scale(values) -> tuple:
    """The x range of an interval chart: from a little below the lowest value shown (in steps of 0.05) to 1."""
    low = min([v for v in values if v is not None] + [0.9])
    return (max(0.0, (int((low - 0.02) * 20)) / 20), 1.0)


def _before_labels(report: VersionReport, settings: Settings) -> Optional[dict]:
    """What the version's calibration says of its window (monitoring/before_labels.py): the estimate beside the
    realised values once labels came, label drift, concept drift, attribution drift. None for a version that
    served nothing in the window; {'missing': why} when nothing could be estimated."""
    if not report.examples:
        return None
    found = report.estimation
    if found is None:
        return {'missing': 'the version carries no calibration (it was exported before versions carried '
                           'assets.extra/calibration.json): nothing is estimated before labels'}
    if found.estimate is None:
        return {'missing': 'no answer in the window carries a probability (classify and regress answers): '
                           'nothing to estimate from'}
    estimate = found.estimate
    judged = estimate.examples >= settings.min_labelled
    minimum = {'accuracy': settings.min_accuracy, 'auc': settings.min_auc}
    names = {'accuracy': 'accuracy', 'auc': 'AUC'}
    realised = {c.metric: c for c in found.comparisons}
    labelled = {m.metric: m for m in found.labelled.metrics} if found.labelled is not None else {}
    rows, charts = [], []
    for m in estimate.metrics:
        verdict = ('n/a' if m.value is None else f'not judged (under {settings.min_labelled} examples)'
                   if not judged else 'ALERT' if m.value < minimum[m.metric] else 'ok')
        row = [names[m.metric], m.value if m.value is not None else 'n/a', _interval(m.interval),
               m.reference if m.reference is not None else 'n/a', minimum[m.metric], verdict]
        chart = {f'estimated, {estimate.examples} served': (m.value, m.interval, 'estimated')}
        if found.labelled is not None:
            c, e = realised.get(m.metric), labelled[m.metric]
            within = 'n/a' if c is None or c.within is None else 'yes' if c.within else (
                'NO, below' if c.below else 'NO, above')
            row += [e.value if e.value is not None else 'n/a', _interval(e.interval),
                    c.realised if c is not None and c.realised is not None else 'n/a', within]
            chart[f'estimated, {found.labelled.examples} labelled'] = (e.value, e.interval, 'estimated')
            chart[f'realised, {found.labelled.examples} labelled'] = (c.realised if c else None, None, 'realised')
        chart['eval split (reference)'] = (m.reference, None, 'reference')
        rows.append(row)
        shown = [v for value, interval, _ in chart.values() for v in (value, *(interval or ()))]
        charts.append({'metric': names[m.metric], 'rows': chart, 'x_range': _scale(shown + [minimum[m.metric]]),
                       'marks': {'minimum': minimum[m.metric]}})
    headers = ['metric', f'estimated ({estimate.examples} served)', '95% interval', 'eval split', 'minimum',
               'verdict']
    if found.labelled is not None:
        headers += [f'estimated ({found.labelled.examples} labelled)', '95% interval', 'realised',
                    'realised within the interval']
    return {'examples': estimate.examples, 'expected_label_rate': estimate.expected_label_rate,
            'headers': headers, 'rows': rows, 'charts': charts,
            'labelled': found.labelled.examples if found.labelled is not None else None,
            'label_drift': _label_drift(found.label_drift), 'concept_drift': _concept_drift(found),
            'attribution_drift': _attribution_drift(found.attribution_drift),
            'attribution_sample': settings.attribution_sample}


def _label_drift(drift) -> Optional[dict]:
    if drift is None:
        return None
    return {'drifted': drift.drifted, 'chart': {'feedback (this window)': drift.rate,
                                                'training (eval split)': drift.reference_rate},
            'rows': [['label rate in the feedback', f'{drift.rate:.3f} ({drift.positives} of {drift.examples})'],
                     ['label rate in training (eval split)',
                      f'{drift.reference_rate:.3f} (of {drift.reference_examples})'],
                     ['difference, 95% interval (Newcombe)', f'{drift.difference:+.3f} ({drift.interval[0]:+.3f} '
                                                             f'to {drift.interval[1]:+.3f})'],
                     ['two-proportion z-test', f'p = {drift.p_value:.3g} (significant below {drift.alpha})'],
                     ['verdict', f'{"DRIFTED" if drift.drifted else "no drift"} (drifted: significant and moved '
                                 f'by at least {drift.threshold})']]}


def _concept_drift(found) -> Optional[dict]:
    concept = found.concept_drift
    if concept is None:
        return None
    names = {'accuracy': 'accuracy', 'auc': 'AUC'}
    below = [f'{names[c.metric]} realised {c.realised:.3f} below its interval {_interval(c.interval)}'
             for c in found.comparisons if c.metric in concept.below_estimate]
    below += [f'{names[metric]} realised more than 3 sampling errors below its eval value'
              for metric in concept.below_reference if metric not in concept.below_estimate]
    if concept.signal:
        text = f'Concept drift: {"; ".join(below)}, while the inputs did not drift (labels no longer follow ' \
               'the features as they did).'
    elif concept.dropped:
        text = f'Performance dropped ({"; ".join(below)}), but the inputs drifted too (skew or drift fired): ' \
               'reported, not called concept drift (the calibration may not reach where the traffic went).'
    else:
        text = (f'No concept drift: on the {concept.examples} labelled examples the realised values are where '
                'the estimate put them.')
    return {'signal': concept.signal, 'text': text}


def _attribution_drift(drift) -> Optional[dict]:
    if drift is None:
        return None
    return {'examples': drift.examples, 'threshold': drift.threshold, 'drifted': [f.feature for f in drift.drifted],
            'changes': {f.feature: f.change for f in drift.features},
            'rows': [[f.feature, f.reference, f.served, f.change, 'ALERT' if f.drifted else 'ok']
                     for f in drift.features]}


def _feedback(found: Pass) -> Optional[dict]:
    check = found.feedback
    if check is None:
        return None
    return {'records': check.records, 'unknown_count': len(check.unknown),
            'unknown': [[r.request_id, r.example, r.source] for r in check.unknown[:50]],
            'duplicate_count': len(check.duplicates),
            'duplicates': [[r.request_id, r.example, dict(r.observed), r.source] for r in check.duplicates[:50]]}




def _callers(found: Pass, shown: int = 20) -> Optional[dict]:
    """The callers of the window: the named ones first, then the busiest (at most `shown` rows)."""
    if not found.callers:
        return None

    def share(value):
        return '-' if value is None else f'{value:.1%}'
    ordered = sorted(found.callers, key=lambda f: (not f.flagged, -f.requests, f.caller))[:shown]
    return {'count': len(found.callers), 'flagged': sum(f.flagged for f in found.callers),
            'rows': [[f.caller or '(unknown)', f.requests, f.examples, f'{f.request_rate:.3g}',
                      share(f.outlier_share), share(f.near_duplicate_share), share(f.near_threshold_share),
                      '-' if f.shapiro_w is None else f'{f.shapiro_w:.3f}', ', '.join(f.reasons) or '-']
                     for f in ordered]}


def _recorded_estimate(entry: dict, metric: str) -> Optional[float]:
    """A recorded pass's estimate of `metric` (metadata_record: findings["estimation"]), None if it made none."""
    estimate = ((entry['findings'].get('estimation') or {}).get('estimate')) or {}
    return (estimate.get(metric) or {}).get('estimated')


def _history(entries: List[dict]) -> Optional[dict]:
    """The recorded passes over a version's traffic (from ML Metadata), oldest first, as the charts draw them."""
    if len(entries) < 2:
        return None
    ticks = {i: datetime.datetime.fromtimestamp(e['window_end_micros'] / 1e6, datetime.timezone.utc).strftime(
        '%m-%d %H:%M') for i, e in enumerate(entries)}
    shown = {i: label for i, label in ticks.items() if i in (0, len(entries) - 1, len(entries) // 2)}
    live = {name: [(i, e[key]) for i, e in enumerate(entries) if e.get('labelled_examples') and key in e]
            for name, key in (('AUC', 'live_auc'), ('accuracy', 'live_accuracy'))}
    # The estimate before labels, where the pass made one (passes recorded before it was recorded have none).
    for name, metric in (('estimated AUC', 'auc'), ('estimated accuracy', 'accuracy')):
        live[name] = [(i, _recorded_estimate(e, metric)) for i, e in enumerate(entries)
                      if _recorded_estimate(e, metric) is not None]
    ratios = {}
    for i, e in enumerate(entries):
        for kind in ('skew', 'drift'):
            for feature, (value, threshold) in (e['findings'].get(kind) or {}).items():
                if '-' not in str(threshold) and float(threshold) > 0:
                    ratios.setdefault(f'{kind} {feature}', []).append((i, value / float(threshold)))
    worst = sorted(ratios, key=lambda k: -max(r for _, r in ratios[k]))[:4]
    return {'count': len(entries), 'x_range': (0, len(entries) - 1), 'x_labels': shown,
            'distances': {k: ratios[k] for k in worst},
            'top': max([r for k in worst for _, r in ratios[k]] + [1.2]),
            'live': {k: v for k, v in live.items() if v},
            'rows': [[ticks[i], e.get('examples', 0), e.get('outlier_rate', 'n/a'), e.get('labelled_examples', 0),
                      e.get('alerts', 0)] for i, e in enumerate(entries)]}


def render(found: Pass, settings: Settings, window_text: str, histories: Optional[dict] = None,
           path: Optional[str] = None) -> str:
    """The page; `path`, where it is written, for links to the related reports beside it."""
    reports, unmonitored = found.reports, found.unmonitored
    histories = histories or {}
    here = os.path.basename(path) if path else ''
    directory = os.path.dirname(path) if path and '://' not in path else None
    return reports_page.render(
        'monitoring.html', title=f'Monitoring {window_text}',
        nav=reports_page.related(directory, here, versions=[r.version for r in reports]),
        window_text=window_text, log_dir=settings.log_dir, model_base_path=settings.model_base_path,
        max_outlier_rate=settings.max_outlier_rate,
        unmonitored=[{'version': u.version, 'examples': u.examples, 'reason': u.alert['reason']} for u in unmonitored],
        versions=[_version(r, settings, histories.get(r.version, [])) for r in reports],
        feedback=_feedback(found), callers=_callers(found))


def write(found: Pass, settings: Settings, window_text: str, path: str, histories: Optional[dict] = None) -> str:
    """`histories`: per version, the recorded passes over its traffic (metadata_record.history)."""
    page = render(found, settings, window_text, histories, path)
    if '://' not in path:
        return write_atomically(path, page)
    import tensorflow as tf
    with tf.io.gfile.GFile(path, 'w') as f:  # an object store publishes the object whole
        f.write(page)
    return path
