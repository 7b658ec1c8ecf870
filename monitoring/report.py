"""The monitoring report: one self-contained HTML page per monitoring pass, gathered
here and laid out by `reports` (templates/monitoring.html).

Per version: its alerts, and the checks that could not run and why; skew and
drift distances against their thresholds, a row per test (charts); each
compared feature's training and serving distributions side by side; the
outlier rate and the prediction's drift; live metrics from feedback with their
confidence intervals and a calibration plot; and what in the feedback store
could not be joined.
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
            'live': _live(report, settings), 'has_training_statistics': report.training_statistics is not None,
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


def _history(entries: List[dict]) -> Optional[dict]:
    """The recorded passes over a version's traffic (from ML Metadata), oldest first, as the charts draw them."""
    if len(entries) < 2:
        return None
    ticks = {i: datetime.datetime.fromtimestamp(e['window_end_micros'] / 1e6, datetime.timezone.utc).strftime(
        '%m-%d %H:%M') for i, e in enumerate(entries)}
    shown = {i: label for i, label in ticks.items() if i in (0, len(entries) - 1, len(entries) // 2)}
    live = {name: [(i, e[key]) for i, e in enumerate(entries) if e.get('labelled_examples') and key in e]
            for name, key in (('AUC', 'live_auc'), ('accuracy', 'live_accuracy'))}
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
