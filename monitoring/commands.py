"""`monitor`: one monitoring pass over a window of request logs; `feedback`: ground truth in.

`monitor` prints a line per version (with the accuracy and AUC estimated before
labels, and a second line of what the labels said once they came) and one JSON
line per alert, writes the HTML report, exposes the distances and estimates as
Prometheus gauges (a textfile for node-exporter's collector, or a Pushgateway,
as batch jobs do), posts the alerts to a webhook, and exits with ALERT_EXIT
when anything alerted, so a CronJob or CI step fails visibly.
"""

import argparse
import datetime
import json
import os
import sys

from foundation.durations import parse_duration
from foundation.workspace import Workspace

# Exit code of a monitoring pass that raised an alert (0 ok, 1 failed, 2 bad input are the CLI's).
ALERT_EXIT = 3


def register(commands: argparse._SubParsersAction, workspace: Workspace) -> None:
    default_model_base_path = workspace.absolute().model_base_path
    default_log_dir, default_feedback_dir = workspace.request_log_dir, workspace.feedback_dir
    default_metadata_path = workspace.metadata_path
    monitor = commands.add_parser(
        'monitor', help='skew, drift, prediction drift, outlier rate, estimated and live performance of served '
        'traffic, per model version')
    monitor.add_argument('--request-log-dir', default=default_log_dir,
                         help='the server\'s --request-log-dir, local or gs:// (default: %(default)s)')
    monitor.add_argument('--model-base-path', default=default_model_base_path,
                         help='where the pushed versions are; each carries its training statistics and schema '
                         '(default: %(default)s)')
    monitor.add_argument('--window', default='1h', help='window length: 30m, 1h, 1d (default: %(default)s); '
                         'drift is measured against the window before it')
    end = monitor.add_mutually_exclusive_group()
    end.add_argument('--end', help='window end, ISO 8601 in UTC (default: now)')
    end.add_argument('--align', action='store_true',
                     help='end the window at the last multiple of its length (UTC), e.g. the last full hour: '
                     'passes run at any minute tile time, without gaps or overlaps (for schedules)')
    monitor.add_argument('--max-outlier-rate', type=float, default=0.05,
                         help='alert above this share of flagged examples (default: %(default)s)')
    monitor.add_argument('--feedback-dir', default=default_feedback_dir,
                         help='ground truth stored by `feedback` or the server\'s POST /v1/feedback, for live '
                         'metrics (default: %(default)s)')
    monitor.add_argument('--min-auc', type=float, default=0.7, help='alert when live AUC is below (default: %(default)s)')
    monitor.add_argument('--min-accuracy', type=float, default=0.6,
                         help='alert when live accuracy is below (default: %(default)s)')
    monitor.add_argument('--min-labelled', type=int, default=100,
                         help='judge live metrics from this many labelled examples on, and the estimate before '
                         'labels from this many served ones (default: %(default)s)')
    monitor.add_argument('--attribution-sample', type=attribution_sample, default=0, metavar='N',
                         help='explain N served rows per version for attribution drift (500 is the reference\'s '
                         f'size; at least {ATTRIBUTION_MIN_SAMPLE}); loads each version\'s SavedModel, about 2 s '
                         'a version (default: 0, off)')
    monitor.add_argument('--report-dir', default=workspace.report_dir,
                         help='where the HTML report goes (default: %(default)s)')
    record = monitor.add_mutually_exclusive_group()
    record.add_argument('--metadata-path', default=default_metadata_path,
                        help='record the pass in this ML Metadata SQLite store, linked to the pushed models it '
                        'judged (default: %(default)s)')
    record.add_argument('--metadata-grpc', metavar='HOST:PORT',
                        help="record it in a cluster's ML Metadata service instead, e.g. "
                        'metadata-grpc-service.kubeflow:8080')
    monitor.add_argument('--metrics-file', help='write Prometheus gauges here (node-exporter textfile format)')
    monitor.add_argument('--pushgateway', help='push the gauges to this Prometheus Pushgateway (host:port)')
    monitor.add_argument('--webhook', help='POST the alerts as JSON to this URL')
    monitor.set_defaults(handler=monitor_command)

    feedback = commands.add_parser(
        'feedback', help='store ground truth for served requests (CSV: request_id, [example], tips and/or label)')
    feedback.add_argument('csv_file', help='a CSV file with a header: request_id (as the server returned it in '
                          'X-Request-Id), example (position in the request, default 0), tips or label')
    feedback.add_argument('--feedback-dir', default=default_feedback_dir,
                          help='the append-only store (default: %(default)s)')
    feedback.add_argument('--request-log-dir', default=default_log_dir,
                          help='request ids are checked against this log (default: %(default)s)')
    feedback.set_defaults(handler=feedback_command)

    span = commands.add_parser(
        'feedback-span', help="write labelled serving traffic (request log + feedback) as the data root's next span")
    span.add_argument('--feedback-dir', default=default_feedback_dir, help='(default: %(default)s)')
    span.add_argument('--request-log-dir', default=default_log_dir, help='(default: %(default)s)')
    span.add_argument('--data-root', default=os.path.join(os.path.dirname(default_log_dir), 'data'),
                      help='the pipeline\'s span-N/ directories (default: %(default)s)')
    span.set_defaults(handler=feedback_span_command)


# The fewest explained rows attribution drift judges (monitoring/attribution_drift.py, MIN_SAMPLE): a smaller
# sample would never be judged, so it is refused here rather than silently ignored.
ATTRIBUTION_MIN_SAMPLE = 200


def attribution_sample(text: str) -> int:
    try:
        rows = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'a number of rows, not {text!r}') from None
    if rows != 0 and rows < ATTRIBUTION_MIN_SAMPLE:
        raise argparse.ArgumentTypeError(f'0 (off) or at least {ATTRIBUTION_MIN_SAMPLE} rows, not {rows}: '
                                         'fewer are never judged')
    return rows


def parse_window(text: str) -> int:
    return parse_duration(text, '--window')


def aligned_end(now: datetime.datetime, window_seconds: int) -> datetime.datetime:
    """The latest multiple of the window length (since the epoch, UTC) at or before `now`."""
    stamp = int(now.timestamp()) // window_seconds * window_seconds
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc)


def parse_end(text) -> datetime.datetime:
    if not text:
        return datetime.datetime.now(datetime.timezone.utc)
    try:
        end = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f'--end takes an ISO 8601 time like 2026-11-30T12:00:00, not {text!r}') from None
    return end if end.tzinfo else end.replace(tzinfo=datetime.timezone.utc)


def read_feedback_csv(path: str, allowed):
    """Every row as feedback, or a FeedbackError naming the first bad line (nothing is stored then)."""
    import csv
    import tensorflow as tf
    from serving import feedback as feedback_lib
    if not tf.io.gfile.exists(path):
        raise feedback_lib.FeedbackError(f'no feedback file at {path}')
    with tf.io.gfile.GFile(path, 'r') as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or feedback_lib.REQUEST_ID not in reader.fieldnames:
            raise feedback_lib.FeedbackError(f'{path}: the first line must be a header naming '
                                             f'{feedback_lib.REQUEST_ID!r} and the observed columns (tips, label)')
        items = []
        for row in reader:
            if None in row or None in row.values():
                raise feedback_lib.FeedbackError(f'{path}, line {reader.line_num}: expected '
                                                 f'{len(reader.fieldnames)} columns as in the header')
            items.append({k: v for k, v in row.items() if v.strip() != ''})  # an empty cell was not observed
    if not items:
        raise feedback_lib.FeedbackError(f'{path} holds no feedback rows')
    allowed = set(allowed)
    return [feedback_lib.parse(item, f'{path}, line {i}', allowed) for i, item in enumerate(items, 2)]


def _examples_text(records, limit: int = 10) -> str:
    shown = ', '.join(f'{r.request_id}#{r.example}' for r in records[:limit])
    return shown + (f' and {len(records) - limit} more' if len(records) > limit else '')


def feedback_command(args) -> int:
    """Stores the rows whose example was served and has no feedback yet; exit 2 if any row was refused
    (a row identical to what is stored counts as stored: the same file twice is harmless)."""
    from monitoring import request_logs
    from serving import feedback as feedback_lib
    from taxi_model import contract
    records = read_feedback_csv(args.csv_file, contract.FEEDBACK_VALUES)
    _, _, logged = request_logs.read_by_version(args.request_log_dir, lambda version: None, 0, 0,
                                                wanted_ids=frozenset(r.request_id.encode() for r in records))
    served = set()
    if logged is not None:
        served = set(zip((i.decode() for i in request_logs.scalars(logged.column(request_logs.REQUEST_ID), b'')),
                         map(int, request_logs.scalars(logged.column(request_logs.EXAMPLE_INDEX)))))
    known = [r for r in records if r.key in served]
    unknown = [r for r in records if r.key not in served]
    source = args.csv_file if '://' in args.csv_file else os.path.abspath(args.csv_file)
    store = feedback_lib.FeedbackStore(args.feedback_dir)
    result = store.append(known, source=source)
    stored, _ = feedback_lib.read(args.feedback_dir)
    conflicting = [d for d in result.duplicates if d.observed != stored[d.key].observed]
    print(f'{args.csv_file}: {len(records)} feedback row(s); stored {result.stored}'
          + (f' in {result.path}' if result.path else '')
          + (f'; {len(result.duplicates) - len(conflicting)} already stored as given' if result.duplicates else ''))
    if conflicting:
        print(f'  {len(conflicting)} NOT stored: feedback already recorded with other values (the first record '
              f'stands): {_examples_text(conflicting)}')
    if unknown:
        print(f'  {len(unknown)} NOT stored: no logged request has this id and example in {args.request_log_dir} '
              f'(requests served in the last minute may still be in a .partial log file: send those rows '
              f'again later): {_examples_text(unknown)}')
    return 2 if conflicting or unknown else 0


def feedback_span_command(args) -> int:
    from monitoring import feedback_span
    written = feedback_span.write_next_span(args.feedback_dir, args.request_log_dir, args.data_root)
    print(f'Wrote span {written.span}: {written.rows} labelled served example(s) in {written.path}')
    for reason, count in written.left_out.items():
        print(f'  left out: {count} ({reason})')
    return 0


def gauges(reports, settings=None, caller_findings=()):
    """A Prometheus registry with the pass's findings; with its `settings`, also the limits it judged them by,
    per version as the thresholds are, so that alert rules compare each finding with its own limit
    (monitoring/prometheus/rules.yaml)."""
    import prometheus_client as prom
    from monitoring import callers, live_metrics
    registry = prom.CollectorRegistry()
    # A feature may have several tests (shape, and location/scale for amounts): `test` keeps them apart, so one
    # test's value never hides another's breach.
    distance = prom.Gauge('taxi_monitor_distance', 'Skew or drift distance of a feature, per test',
                          ['model_version', 'feature', 'kind', 'test'], registry=registry)
    threshold = prom.Gauge('taxi_monitor_threshold', 'Threshold of the distance',
                           ['model_version', 'feature', 'kind', 'test'], registry=registry)
    examples = prom.Gauge('taxi_monitor_examples', 'Examples served in the window', ['model_version'],
                          registry=registry)
    outliers = prom.Gauge('taxi_monitor_outlier_rate', 'Share of served examples flagged as outliers',
                          ['model_version'], registry=registry)
    alerts = prom.Gauge('taxi_monitor_alerts', 'Alerts raised by the pass', ['model_version'], registry=registry)
    live = prom.Gauge('taxi_monitor_live_metric', 'Metric on served examples with ground truth (feedback)',
                      ['model_version', 'metric'], registry=registry)
    labelled = prom.Gauge('taxi_monitor_labelled_examples', 'Served examples in the window with ground truth',
                          ['model_version'], registry=registry)
    max_outlier_rate = prom.Gauge('taxi_monitor_max_outlier_rate', 'Outlier rate above which the pass alerts',
                                  ['model_version'], registry=registry)
    live_minimum = prom.Gauge('taxi_monitor_live_metric_minimum', 'Minimum of a live metric, for the metrics the '
                              'pass judged (enough labelled examples)', ['model_version', 'metric'], registry=registry)
    # Before labels (monitoring/before_labels.py): the estimate of each metric with its 95% interval, the minimum
    # for the metrics the pass judged (enough served examples), the label rate of the feedback against training,
    # and whether the labels moved with the inputs where they were (concept drift).
    estimated = prom.Gauge('taxi_monitor_estimated_metric', 'Metric estimated from the calibrated probabilities '
                           'of the served examples, before labels (CBPE)', ['model_version', 'metric'],
                           registry=registry)
    estimated_lower = prom.Gauge('taxi_monitor_estimated_metric_lower', 'Lower end of the estimate\'s 95% interval',
                                 ['model_version', 'metric'], registry=registry)
    estimated_upper = prom.Gauge('taxi_monitor_estimated_metric_upper', 'Upper end of the estimate\'s 95% interval',
                                 ['model_version', 'metric'], registry=registry)
    estimated_minimum = prom.Gauge('taxi_monitor_estimated_metric_minimum', 'Minimum of an estimated metric, for '
                                   'the metrics the pass judged (enough served examples)', ['model_version', 'metric'],
                                   registry=registry)
    label_rate = prom.Gauge('taxi_monitor_label_rate', 'Share of positive labels: in the window\'s feedback, and in '
                            'the training (eval) data the version carries', ['model_version', 'source'],
                            registry=registry)
    concept_drift = prom.Gauge('taxi_monitor_concept_drift', '1 when performance on labelled examples fell below '
                               'the estimate while the inputs did not drift (concept drift), else 0',
                               ['model_version'], registry=registry)
    # A CronJob that stops leaves its last gauges in the Pushgateway: this says how old they are.
    last_pass = prom.Gauge('taxi_monitor_last_pass_timestamp_seconds', 'When the pass that set these gauges ran',
                           registry=registry)
    last_pass.set_to_current_time()
    for report in reports:
        version = str(report.version)
        examples.labels(version).set(report.examples)
        alerts.labels(version).set(len(report.alerts))
        if report.outlier_rate is not None:
            outliers.labels(version).set(report.outlier_rate)
            if settings is not None:
                max_outlier_rate.labels(version).set(settings.max_outlier_rate)
        labels = report.live
        if settings is not None and labels is not None and labels.examples >= settings.min_labelled:
            # What monitor.py judges: accuracy from min_labelled labels on, AUC once each class has enough.
            live_minimum.labels(version, 'accuracy').set(settings.min_accuracy)
            if min(labels.positives, labels.examples - labels.positives) >= live_metrics.MIN_PER_CLASS:
                live_minimum.labels(version, 'auc').set(settings.min_auc)
        labelled.labels(version).set(report.live.examples if report.live else 0)
        if report.live is not None:
            values = {'accuracy': report.live.accuracy, 'auc': report.live.auc,
                      'calibration_error': report.live.calibration_error,
                      'mean_prediction': report.live.mean_predicted, 'observed_rate': report.live.observed_rate}
            for metric, value in values.items():
                if value is not None:
                    live.labels(version, metric).set(value)
        findings = report.estimation
        estimate = findings.estimate if findings is not None else None
        if estimate is not None:
            # What monitor.py judges (before_labels.Findings.alerts): the estimate from min_labelled examples on.
            judged = settings is not None and estimate.examples >= settings.min_labelled
            minimum = {'accuracy': settings.min_accuracy, 'auc': settings.min_auc} if settings is not None else {}
            for metric in estimate.metrics:
                if metric.value is None:
                    continue
                estimated.labels(version, metric.metric).set(metric.value)
                if metric.interval is not None:
                    estimated_lower.labels(version, metric.metric).set(metric.interval[0])
                    estimated_upper.labels(version, metric.metric).set(metric.interval[1])
                if judged:
                    estimated_minimum.labels(version, metric.metric).set(minimum[metric.metric])
        if findings is not None and findings.label_drift is not None:
            label_rate.labels(version, 'feedback').set(findings.label_drift.rate)
            label_rate.labels(version, 'training').set(findings.label_drift.reference_rate)
        if findings is not None and findings.concept_drift is not None:
            concept_drift.labels(version).set(int(findings.concept_drift.signal))
        found = [('skew', f) for f in report.skew] + [('drift', f) for f in report.drift]
        if report.prediction_drift is not None:
            found.append(('prediction_drift', report.prediction_drift))
        for kind, f in found:
            distance.labels(version, f.feature, kind, f.measure).set(f.value)
            threshold.labels(version, f.feature, kind, f.measure).set(float(f.threshold))
    callers.add_gauges(registry, caller_findings)
    return registry


def _live_text(report) -> str:
    live = report.live
    if live is None:
        return 'no feedback yet'
    auc = f'AUC {live.auc:.3f} [{live.auc_ci[0]:.3f}, {live.auc_ci[1]:.3f}]' if live.auc is not None else 'AUC n/a'
    return (f'live on {live.examples} labelled: {auc}, accuracy {live.accuracy:.3f} '
            f'[{live.accuracy_ci[0]:.3f}, {live.accuracy_ci[1]:.3f}], calibration error {live.calibration_error:.3f}')


def settings_from(args, end: datetime.datetime, window: int):
    """The pass's monitor.Settings from the command's arguments, for the window of `window` seconds to `end`."""
    from monitoring import monitor
    from taxi_model import contract
    base = args.model_base_path
    return monitor.Settings(
        log_dir=args.request_log_dir, model_base_path=base if '://' in base else os.path.abspath(base),
        end_micros=int(end.timestamp() * 1e6), window_micros=window * 1_000_000,
        prediction_key=contract.PROBABILITIES, outlier_key=contract.IS_OUTLIER,
        max_outlier_rate=args.max_outlier_rate, feedback_dir=args.feedback_dir,
        labeler=contract.labels_from_feedback, label_features=contract.FEEDBACK_FEATURES,
        min_auc=args.min_auc, min_accuracy=args.min_accuracy, min_labelled=args.min_labelled,
        attribution_sample=args.attribution_sample)


def _interval_text(metric) -> str:
    """'0.912 [0.894, 0.930]' of a performance_estimation.MetricEstimate ('n/a' without a value)."""
    if metric.value is None:
        return 'n/a'
    interval = f' [{metric.interval[0]:.3f}, {metric.interval[1]:.3f}]' if metric.interval else ''
    return f'{metric.value:.3f}{interval}'


def _estimate_text(report) -> str:
    """What the version's calibration says of its window before labels, with a separator ('' for a version
    that served nothing in the window)."""
    if not report.examples:
        return ''
    estimation = report.estimation
    if estimation is None:
        return 'no estimate (the version carries no calibration), '
    estimate = estimation.estimate
    if estimate is None:
        return 'no estimate (no answer with a probability), '
    return (f'estimated accuracy {_interval_text(estimate.accuracy)}, AUC {_interval_text(estimate.auc)}, ')


_METRIC_NAMES = {'accuracy': 'accuracy', 'auc': 'AUC'}


def _dropped_text(estimation, concept) -> str:
    """The metrics concept drift names: realised below the estimate's interval, or below the reference."""
    texts = [f'realised {_METRIC_NAMES[c.metric]} {c.realised:.3f} below [{c.interval[0]:.3f}, {c.interval[1]:.3f}]'
             for c in estimation.comparisons if c.metric in concept.below_estimate]
    texts += [f'realised {_METRIC_NAMES[metric]} below the reference' for metric in concept.below_reference
              if metric not in concept.below_estimate]
    return ', '.join(texts)


def _labelled_text(report) -> str:
    """Once labels came: label drift, concept drift; attribution drift when measured ('' when neither)."""
    estimation = report.estimation
    if estimation is None:
        return ''
    parts = []
    if estimation.labelled is not None:
        drift = estimation.label_drift
        if drift is None:
            parts.append(f'{estimation.labelled.examples} labelled: too few to judge label or concept drift')
        else:
            parts.append(f'{"label drift" if drift.drifted else "no label drift"}: label rate {drift.rate:.3f} '
                         f'vs {drift.reference_rate:.3f} in training (p={drift.p_value:.2g})')
        concept = estimation.concept_drift
        if concept is not None:
            if concept.signal:
                parts.append(f'concept drift: {_dropped_text(estimation, concept)}')
            elif concept.dropped:
                parts.append(f'{_dropped_text(estimation, concept)} with the inputs drifted (not called concept '
                             'drift)')
            else:
                parts.append('no concept drift')
    attribution = estimation.attribution_drift
    if attribution is not None:
        drifted = attribution.drifted
        parts.append(f'attribution drift in {", ".join(f.feature for f in drifted)}' if drifted else
                     f'no attribution drift ({attribution.examples} rows explained)')
    return '; '.join(parts)


def monitor_command(args) -> int:
    from foundation import metadata_store
    from monitoring import callers, metadata_record, monitor, report
    window = parse_window(args.window)
    end = aligned_end(parse_end(None), window) if args.align else parse_end(args.end)
    settings = settings_from(args, end, window)
    found = monitor.monitor(settings)
    start = end - datetime.timedelta(seconds=window)
    window_text = f'{start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC'
    print(f'Monitoring {window_text}: {len(found.reports)} version(s) served')
    for r in found.reports:
        rate = f'{r.outlier_rate:.2%}' if r.outlier_rate is not None else 'n/a'
        print(f'  version {r.version}: {r.examples} examples, outlier rate {rate}, {_estimate_text(r)}'
              f'{_live_text(r)}, {len(r.alerts)} alert(s){r.not_checked_text}')
        labelled = _labelled_text(r)
        if labelled:
            print(f'    {labelled}')
    for u in found.unmonitored:
        print(f'  version {u.version}: {u.examples} examples NOT monitored (it carries no schema)')
    check = found.feedback
    if check is not None and (check.unknown or check.duplicates or check.reused):
        print(f'  feedback received in the window: {len(check.unknown)} record(s) name no logged request'
              + (f' ({_examples_text(check.unknown)})' if check.unknown else '')
              + f'; {len(check.duplicates)} duplicate record(s) and {check.reused} example(s) named by a reused '
              'request id not counted')
    for alert in found.alerts + found.not_checked:  # checks that could not run are said, beside the alerts
        print(json.dumps(alert, sort_keys=True))
    path = os.path.join(args.report_dir, f'monitor-{end:%Y%m%dT%H%M%S}.html')
    path = path if '://' in path else os.path.abspath(path)
    # Alerts go out first: a metadata outage must not silence them.
    for finding in found.callers:
        if finding.flagged:
            print(f'  {callers.describe(finding)}')
    registry = gauges(found.reports, settings, found.callers)
    if args.metrics_file:
        import prometheus_client as prom
        prom.write_to_textfile(args.metrics_file, registry)
    if args.pushgateway:
        import prometheus_client as prom
        prom.push_to_gateway(args.pushgateway, job='taxi-monitor', registry=registry)
    if args.webhook and (found.alerts or found.not_checked):
        import requests
        requests.post(args.webhook, json={'window': window_text, 'alerts': found.alerts,
                                          'not_checked': found.not_checked}, timeout=10).raise_for_status()
    histories = {}
    try:
        # An existing store only: a mistyped --metadata-path must not become a new, empty store
        # that the pass is recorded in and nobody reads.
        store = metadata_store.connect_existing(args.metadata_path, args.metadata_grpc, mode=metadata_store.WRITE)
        execution_id = metadata_record.record(store, found, settings, path)
        links = {r.version: metadata_record.link(store, settings.model_base_path, r.version) for r in found.reports}
        unlinked = sorted(v for v, how in links.items() if how != metadata_store.BY_DESTINATION)
        print(f'Recorded in ML Metadata as execution {execution_id}' + (
            f' (version(s) {unlinked}: no PushedModel at this push destination; linked by version number where '
            'one exists)' if unlinked else ''))
        histories = {r.version: metadata_record.history(store, settings.model_base_path, r.version)
                     for r in found.reports}
        recorded = True
    except Exception as e:  # the pass's findings are out; say loudly that the record is not
        print(f'error: the pass could not be recorded in ML Metadata: {type(e).__name__}: {e}', file=sys.stderr)
        recorded = False
    print(f'Report: {report.write(found, settings, window_text, path, histories)}')
    if found.alerts:
        return ALERT_EXIT
    return 0 if recorded else 1
