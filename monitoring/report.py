"""The monitoring report: one self-contained HTML page per monitoring pass.

Per version: its alerts; skew and drift distances against their thresholds
(charts); each compared feature's training and serving distributions side by
side; the outlier rate and the prediction's drift; live metrics from
feedback with their confidence intervals and a calibration plot; and what
in the feedback store could not be joined.
"""

import datetime
import html
import os
from typing import List, Optional

from tensorflow_metadata.proto.v0 import statistics_pb2

from atomic_file import write_atomically
from monitoring import metadata_record
from monitoring.monitor import Pass, Settings, VersionReport
from pipeline import html_page, svg_charts

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


def _distributions(report: VersionReport, features: List[str]) -> str:
    """Numeric features on the training quantile buckets (each holds ~1/N of the training data,
    so a departure shows at a glance); categorical ones by their most frequent values."""
    parts = []
    for name in features:
        if name in report.buckets:
            training = {label: t for label, (t, _) in report.buckets[name].items()}
            serving = {label: s for label, (_, s) in report.buckets[name].items()}
        else:
            training = _distribution(_feature(report.training_statistics, name))
            serving = _distribution(_feature(report.serving_statistics, name))
        parts.append(f'<div class="pair"><h4>{html.escape(name)}: training</h4>'
                     f'{svg_charts.bar_chart(training, width=420) if training else "<p>no statistics</p>"}'
                     f'<h4>{html.escape(name)}: served</h4>'
                     f'{svg_charts.bar_chart(serving, width=420) if serving else "<p>no statistics</p>"}</div>')
    return ''.join(parts)


def _findings(title: str, findings) -> str:
    return f'<h3>{html.escape(title)}</h3>' + html_page.distances(findings, beyond='ALERT') if findings else ''


def _version(report: VersionReport, settings: Settings, history: List[dict]) -> str:
    parts = [f'<h2>Version {report.version}: {report.examples} examples served in the window '
             f'({report.previous_examples} in the one before)</h2>']
    if report.alerts:
        parts.append('<ul class="bad">' + ''.join(f'<li>{html.escape(_alert_text(a))}</li>' for a in report.alerts)
                     + '</ul>')
    else:
        parts.append('<p class="good">No alerts.</p>')
    if report.outlier_rate is not None:
        state = 'bad' if report.outlier_rate > settings.max_outlier_rate else 'good'
        parts.append(f'<p class="{state}">Outlier rate {report.outlier_rate:.2%} '
                     f'(alert above {settings.max_outlier_rate:.0%}).</p>')
    if report.prediction_drift is not None:
        p = report.prediction_drift
        parts.append(f'<p class="{"bad" if p.drifted else "good"}">Prediction drift vs the previous window: '
                     f'{p.measure} {p.value:.4g} (allowed {p.threshold}).</p>')
    parts.append(_history(report.version, history))
    parts.append(_live(report, settings))
    if report.training_statistics is None:
        parts.append('<p>This version carries no training statistics: skew was not checked.</p>')
    parts.append(_findings('Training/serving skew', report.skew))
    parts.append(_findings('Drift vs the previous window', report.drift))
    compared = [f.feature for f in report.skew] or [f.feature for f in report.drift]
    if compared:
        parts.append('<h3>Training and served distributions</h3>' + _distributions(report, compared))
    return ''.join(parts)


def _live(report: VersionReport, settings: Settings) -> str:
    live = report.live
    if live is None:
        return '<h3>Live metrics</h3><p>No feedback yet for the examples this version served in the window.</p>'
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
    points = [(b.mean_predicted, b.observed_rate) for b in live.calibration]
    note = (f'<p>{report.unlabelable} example(s) had feedback from which no label could be derived.</p>'
            if report.unlabelable else '')
    return (f'<h3>Live metrics: {live.examples} served examples with ground truth ({live.positives} positive)</h3>'
            + html_page.table(['metric', 'value', '95% interval', 'minimum', 'verdict'], rows) + note
            + '<div class="pair"><h4>Calibration: observed rate against mean prediction, per decile</h4>'
            + svg_charts.line_chart({f'version {report.version}': points}, (0, 1), (0, 1), diagonal=True)
            + html_page.table(['predicted', 'examples', 'mean predicted', 'observed'],
                              [[f'{b.low:.1f} to {b.high:.1f}', b.examples, b.mean_predicted, b.observed_rate]
                               for b in live.calibration]) + '</div>')


def _feedback(found: Pass) -> str:
    check = found.feedback
    if check is None:
        return ''
    parts = [f'<h2>Feedback store</h2><p>{check.records} record(s).</p>']
    if check.unknown:
        parts.append(f'<p class="bad">{len(check.unknown)} record(s) name no logged request (not joined):</p>'
                     + html_page.table(['request id', 'example', 'received from'],
                                       [[r.request_id, r.example, r.source] for r in check.unknown[:50]]))
    if check.duplicates:
        parts.append(f'<p class="bad">{len(check.duplicates)} duplicate record(s) (the first record for an '
                     'example counts):</p>'
                     + html_page.table(['request id', 'example', 'observed', 'received from'],
                                       [[r.request_id, r.example, dict(r.observed), r.source]
                                        for r in check.duplicates[:50]]))
    return ''.join(parts)


_alert_text = metadata_record.alert_text


def _history(version: int, entries: List[dict]) -> str:
    """Charts of the recorded passes over this version's traffic (from ML Metadata), oldest first."""
    if len(entries) < 2:
        return ''
    ticks = {i: datetime.datetime.fromtimestamp(e['window_end_micros'] / 1e6, datetime.timezone.utc).strftime(
        '%m-%d %H:%M') for i, e in enumerate(entries)}
    shown = {i: label for i, label in ticks.items() if i in (0, len(entries) - 1, len(entries) // 2)}
    x_range = (0, len(entries) - 1)
    live = {name: [(i, e[key]) for i, e in enumerate(entries) if e.get('labelled_examples') and key in e]
            for name, key in (('AUC', 'live_auc'), ('accuracy', 'live_accuracy'))}
    ratios = {}
    for i, e in enumerate(entries):
        for kind in ('skew', 'drift'):
            for feature, (value, threshold) in (e['findings'].get(kind) or {}).items():
                if '-' not in str(threshold) and float(threshold) > 0:
                    ratios.setdefault(f'{kind} {feature}', []).append((i, value / float(threshold)))
    worst = sorted(ratios, key=lambda k: -max(r for _, r in ratios[k]))[:4]
    top = max([r for k in worst for _, r in ratios[k]] + [1.2])
    parts = [f'<h3>History: {len(entries)} recorded windows of version {version} (ML Metadata)</h3>',
             '<div class="pair"><h4>Distance over its threshold (the four highest; above the line alerts)</h4>'
             + svg_charts.line_chart({k: ratios[k] for k in worst}, x_range, (0, top), width=520,
                                     x_labels=shown, y_line=1.0) + '</div>']
    if any(live.values()):
        parts.append('<div class="pair"><h4>Live metrics</h4>' + svg_charts.line_chart(
            {k: v for k, v in live.items() if v}, x_range, (0, 1), width=420, x_labels=shown) + '</div>')
    parts.append('<div class="pair"><h4>Outlier rate and examples</h4>' + html_page.table(
        ['window end', 'examples', 'outlier rate', 'labelled', 'alerts'],
        [[ticks[i], e.get('examples', 0), e.get('outlier_rate', 'n/a'), e.get('labelled_examples', 0),
          e.get('alerts', 0)] for i, e in enumerate(entries)]) + '</div>')
    return ''.join(parts)


def render(found: Pass, settings: Settings, window_text: str, histories: Optional[dict] = None,
           path: Optional[str] = None) -> str:
    """The page; `path`, where it is written, for links to the related reports beside it."""
    reports, unmonitored = found.reports, found.unmonitored
    histories = histories or {}
    body = [f'<h1>Monitoring: {html.escape(window_text)}</h1>',
            f'<p>Request logs {html.escape(settings.log_dir)}; models {html.escape(settings.model_base_path)}.</p>']
    if not reports and not unmonitored:
        body.append('<p>No logged traffic in the window.</p>')
    body.extend(f'<p class="bad">Version {u.version}: {u.examples} examples NOT monitored: '
                f'{html.escape(u.alert["reason"])}.</p>' for u in unmonitored)
    body.extend(_version(r, settings, histories.get(r.version, [])) for r in reports)
    body.append(_feedback(found))
    here = os.path.basename(path) if path else ''
    directory = os.path.dirname(path) if path and '://' not in path else None
    nav = html_page.related(directory, here, versions=[r.version for r in reports])
    return html_page.page(f'Monitoring {window_text}', body, nav=nav)


def write(found: Pass, settings: Settings, window_text: str, path: str, histories: Optional[dict] = None) -> str:
    """`histories`: per version, the recorded passes over its traffic (metadata_record.history)."""
    page = render(found, settings, window_text, histories, path)
    if '://' not in path:
        return write_atomically(path, page)
    import tensorflow as tf
    with tf.io.gfile.GFile(path, 'w') as f:  # an object store publishes the object whole
        f.write(page)
    return path
