"""The monitoring report: one self-contained HTML page per monitoring pass.

Per version: its alerts; skew and drift distances against their thresholds
(charts); each compared feature's training and serving distributions side by
side; the outlier rate and the prediction's drift.
"""

import html
from typing import Iterable, List, Optional, Sequence

from tensorflow_metadata.proto.v0 import statistics_pb2

from atomic_file import write_atomically
from monitoring.monitor import Settings, VersionReport
from pipeline import svg_charts

_STYLE = '''
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
.bad { color: #b00; font-weight: bold; } .good { color: #070; font-weight: bold; }
.pair { display: inline-block; vertical-align: top; margin: 0 2em 1em 0; }
'''


def _table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    head = ''.join(f'<th>{html.escape(str(h))}</th>' for h in headers)
    body = ''.join('<tr>' + ''.join(f'<td>{html.escape(f"{c:.4g}" if isinstance(c, float) else str(c))}</td>'
                                    for c in row) + '</tr>' for row in rows)
    return f'<table><tr>{head}</tr>{body}</table>'


def _feature(stats: Optional[statistics_pb2.DatasetFeatureStatisticsList], name: str):
    if stats is None or not stats.datasets:
        return None
    return next((f for f in stats.datasets[0].features if f.path.step and f.path.step[0] == name), None)


def _distribution(feature) -> dict:
    """Share of examples per histogram bucket (numeric) or per top value (categorical)."""
    if feature is None:
        return {}
    if feature.HasField('num_stats'):
        histogram = next((h for h in feature.num_stats.histograms
                          if h.type == statistics_pb2.Histogram.STANDARD), None)
        if histogram is None:
            return {}
        total = sum(b.sample_count for b in histogram.buckets) or 1
        return {f'{b.low_value:.4g}..{b.high_value:.4g}': b.sample_count / total for b in histogram.buckets}
    total = feature.string_stats.common_stats.num_non_missing or 1
    return {v.value: v.frequency / total for v in feature.string_stats.top_values[:10]}


def _distributions(report: VersionReport, features: List[str]) -> str:
    parts = []
    for name in features:
        training = _distribution(_feature(report.training_statistics, name))
        serving = _distribution(_feature(report.serving_statistics, name))
        parts.append(f'<div class="pair"><h4>{html.escape(name)}: training</h4>'
                     f'{svg_charts.bar_chart(training, width=420) if training else "<p>no statistics</p>"}'
                     f'<h4>{html.escape(name)}: served</h4>'
                     f'{svg_charts.bar_chart(serving, width=420) if serving else "<p>no statistics</p>"}</div>')
    return ''.join(parts)


def _findings(title: str, findings) -> str:
    if not findings:
        return ''
    ratios = {f.feature: f.value / float(f.threshold) for f in findings if float(f.threshold) > 0}
    rows = [[f.feature, f.measure, f.value, f.threshold, 'ALERT' if f.drifted else 'ok'] for f in findings]
    return (f'<h3>{html.escape(title)}</h3><p>Distance as a multiple of its threshold (above 1 alerts):</p>'
            + svg_charts.bar_chart(ratios, unit='x', alert_above=1.0)
            + _table(['feature', 'measure', 'value', 'allowed', 'verdict'], rows))


def _version(report: VersionReport, settings: Settings) -> str:
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
    if report.training_statistics is None:
        parts.append('<p>This version carries no training statistics: skew was not checked.</p>')
    parts.append(_findings('Training/serving skew', report.skew))
    parts.append(_findings('Drift vs the previous window', report.drift))
    compared = [f.feature for f in report.skew] or [f.feature for f in report.drift]
    if compared:
        parts.append('<h3>Training and served distributions</h3>' + _distributions(report, compared))
    return ''.join(parts)


def _alert_text(alert: dict) -> str:
    detail = ', '.join(f'{k}={v}' for k, v in alert.items() if k not in ('alert', 'model_version'))
    return f'{alert["alert"]} (version {alert["model_version"]}): {detail}'


def render(reports: List[VersionReport], settings: Settings, window_text: str) -> str:
    body = [f'<h1>Monitoring: {html.escape(window_text)}</h1>',
            f'<p>Request logs {html.escape(settings.log_dir)}; models {html.escape(settings.model_base_path)}.</p>']
    if not reports:
        body.append('<p>No logged traffic in the window.</p>')
    body.extend(_version(r, settings) for r in reports)
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>Monitoring {html.escape(window_text)}</title>'
            f'<style>{_STYLE}</style></head><body>{"".join(body)}</body></html>')


def write(reports: List[VersionReport], settings: Settings, window_text: str, path: str) -> str:
    return write_atomically(path, render(reports, settings, window_text))
