"""`monitor`: one monitoring pass over a window of request logs.

Prints a line per version and one JSON line per alert, writes the HTML
report, exposes the distances as Prometheus gauges (a textfile for
node-exporter's collector, or a Pushgateway, as batch jobs do), posts the
alerts to a webhook, and exits with ALERT_EXIT when anything alerted, so a
CronJob or CI step fails visibly.
"""

import argparse
import datetime
import json
import os
import re

# Exit code of a monitoring pass that raised an alert (0 ok, 1 failed, 2 bad input are the CLI's).
ALERT_EXIT = 3
_DURATION = re.compile(r'^(\d+)([smhd])$')
_SECONDS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400}


def register(commands: argparse._SubParsersAction, default_model_base_path: str,
             default_log_dir: str) -> None:
    monitor = commands.add_parser(
        'monitor', help='skew, drift, prediction drift and outlier rate of served traffic, per model version')
    monitor.add_argument('--request-log-dir', default=default_log_dir,
                         help='the server\'s --request-log-dir, local or gs:// (default: %(default)s)')
    monitor.add_argument('--model-base-path', default=default_model_base_path,
                         help='where the pushed versions are; each carries its training statistics and schema '
                         '(default: %(default)s)')
    monitor.add_argument('--window', default='1h', help='window length: 30m, 1h, 1d (default: %(default)s); '
                         'drift is measured against the window before it')
    monitor.add_argument('--end', help='window end, ISO 8601 in UTC (default: now)')
    monitor.add_argument('--max-outlier-rate', type=float, default=0.05,
                         help='alert above this share of flagged examples (default: %(default)s)')
    monitor.add_argument('--report-dir', default=os.path.join('workspace', 'reports'),
                         help='where the HTML report goes (default: %(default)s)')
    monitor.add_argument('--metrics-file', help='write Prometheus gauges here (node-exporter textfile format)')
    monitor.add_argument('--pushgateway', help='push the gauges to this Prometheus Pushgateway (host:port)')
    monitor.add_argument('--webhook', help='POST the alerts as JSON to this URL')
    monitor.set_defaults(handler=monitor_command)


def parse_window(text: str) -> int:
    match = _DURATION.match(text or '')
    if not match:
        raise ValueError(f'--window takes a duration like 30m, 1h or 1d, not {text!r}')
    seconds = int(match.group(1)) * _SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError('--window must be longer than 0')
    return seconds


def parse_end(text) -> datetime.datetime:
    if not text:
        return datetime.datetime.now(datetime.timezone.utc)
    try:
        end = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f'--end takes an ISO 8601 time like 2026-11-30T12:00:00, not {text!r}') from None
    return end if end.tzinfo else end.replace(tzinfo=datetime.timezone.utc)


def gauges(reports):
    """A Prometheus registry with the pass's findings."""
    import prometheus_client as prom
    registry = prom.CollectorRegistry()
    distance = prom.Gauge('taxi_monitor_distance', 'Skew or drift distance of a feature',
                          ['model_version', 'feature', 'kind'], registry=registry)
    threshold = prom.Gauge('taxi_monitor_threshold', 'Threshold of the distance', ['model_version', 'feature', 'kind'],
                           registry=registry)
    examples = prom.Gauge('taxi_monitor_examples', 'Examples served in the window', ['model_version'],
                          registry=registry)
    outliers = prom.Gauge('taxi_monitor_outlier_rate', 'Share of served examples flagged as outliers',
                          ['model_version'], registry=registry)
    alerts = prom.Gauge('taxi_monitor_alerts', 'Alerts raised by the pass', ['model_version'], registry=registry)
    for report in reports:
        version = str(report.version)
        examples.labels(version).set(report.examples)
        alerts.labels(version).set(len(report.alerts))
        if report.outlier_rate is not None:
            outliers.labels(version).set(report.outlier_rate)
        found = [('skew', f) for f in report.skew] + [('drift', f) for f in report.drift]
        if report.prediction_drift is not None:
            found.append(('prediction_drift', report.prediction_drift))
        for kind, f in found:
            distance.labels(version, f.feature, kind).set(f.value)
            threshold.labels(version, f.feature, kind).set(float(f.threshold))
    return registry


def monitor_command(args) -> int:
    from monitoring import monitor, report
    from taxi_model import contract
    window = parse_window(args.window)
    end = parse_end(args.end)
    settings = monitor.Settings(
        log_dir=args.request_log_dir, model_base_path=args.model_base_path,
        end_micros=int(end.timestamp() * 1e6), window_micros=window * 1_000_000,
        prediction_key=contract.PROBABILITIES, outlier_key=contract.IS_OUTLIER,
        max_outlier_rate=args.max_outlier_rate)
    reports, unmonitored = monitor.monitor(settings)
    start = end - datetime.timedelta(seconds=window)
    window_text = f'{start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC'
    print(f'Monitoring {window_text}: {len(reports)} version(s) served')
    for r in reports:
        rate = f'{r.outlier_rate:.2%}' if r.outlier_rate is not None else 'n/a'
        print(f'  version {r.version}: {r.examples} examples, outlier rate {rate}, '
              f'{len(r.alerts)} alert(s)')
    for u in unmonitored:
        print(f'  version {u.version}: {u.examples} examples NOT monitored (it carries no schema)')
    alerts = [a for r in reports for a in r.alerts] + [u.alert for u in unmonitored]
    for alert in alerts:
        print(json.dumps(alert, sort_keys=True))
    path = os.path.join(args.report_dir, f'monitor-{end:%Y%m%dT%H%M%S}.html')
    print(f'Report: {report.write(reports, unmonitored, settings, window_text, path)}')
    registry = gauges(reports)
    if args.metrics_file:
        import prometheus_client as prom
        prom.write_to_textfile(args.metrics_file, registry)
    if args.pushgateway:
        import prometheus_client as prom
        prom.push_to_gateway(args.pushgateway, job='taxi-monitor', registry=registry)
    if args.webhook and alerts:
        import requests
        requests.post(args.webhook, json={'window': window_text, 'alerts': alerts}, timeout=10).raise_for_status()
    return ALERT_EXIT if alerts else 0
