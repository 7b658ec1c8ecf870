"""The Prometheus rules (monitoring/prometheus/rules.yaml), with the real promtool: they load; every alert
fires where it must and stays quiet where it must not (alert_rules_test.yaml); the operator's
PrometheusRule holds the same groups; and the rules name only metrics that the server, the gateway and
the monitor export, with the limits the code uses. promtool is a command that runs in seconds, no server:
the unit tier."""

import os
import re
import shutil
import subprocess
import time

import pytest
import yaml

from support import prometheus
from support.repo_files import REPO

pytestmark = pytest.mark.unit

SEVERITIES = {'critical', 'warning'}


def _run(*command, cwd=REPO):
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture(scope='module')
def promtool():
    return prometheus.tool('promtool')


def test_the_rules_load(promtool):
    checked = _run(promtool, 'check', 'rules', prometheus.RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f'SUCCESS: {len(prometheus.rule_list())} rules found' in checked.stdout


def test_every_alert_fires_where_it_must_and_only_there(promtool):
    tested = _run(promtool, 'test', 'rules', prometheus.RULES_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert 'SUCCESS' in tested.stdout


def _alert_cases():
    with open(prometheus.RULES_TESTS) as f:
        cases = yaml.safe_load(f)
    return [case for test in cases['tests'] for case in test.get('alert_rule_test', [])]


def test_every_alert_has_a_case_that_fires_and_one_that_does_not():
    cases = _alert_cases()
    for name in prometheus.alerts():
        assert any(c['alertname'] == name and c.get('exp_alerts') for c in cases), f'{name}: no firing case'
        assert any(c['alertname'] == name and not c.get('exp_alerts') for c in cases), f'{name}: no quiet case'


@pytest.mark.parametrize('right, wrong, alert', [
    # Without its clause for new series, the first drop of a reason is missed.
    ('or (tfserving_request_log_dropped_total unless tfserving_request_log_dropped_total offset 5m)', '',
     'TaxiServingRequestLogDropped'),
    # One worker of a gateway that lost TF Serving, hidden by another that did not.
    ('min without (pid) (tfserving_upstream_connected)', 'max without (pid) (tfserving_upstream_connected)',
     'TaxiGatewayUpstreamDisconnected'),
    # The monitor alerts above the threshold, not at it.
    ('taxi_monitor_distance > taxi_monitor_threshold', 'taxi_monitor_distance >= taxi_monitor_threshold',
     'TaxiMonitorDistanceAboveThreshold'),
    # The monitor compares the estimate with the minimum, not an end of its interval (below_minimum).
    ('taxi_monitor_estimated_metric < taxi_monitor_estimated_metric_minimum',
     'taxi_monitor_estimated_metric_upper < taxi_monitor_estimated_metric_minimum',
     'TaxiMonitorEstimatedPerformanceLow'),
    ('taxi_monitor_estimated_metric < taxi_monitor_estimated_metric_minimum',
     'taxi_monitor_estimated_metric_lower < taxi_monitor_estimated_metric_minimum',
     'TaxiMonitorEstimatedPerformanceLow'),
])
def test_a_plausible_wrong_rule_fails_the_cases(promtool, tmp_path, right, wrong, alert):
    """The cases bite: each edit makes a rule wrong in a way that looks right, and promtool says which."""
    text = open(prometheus.RULES).read()
    assert text.count(right) == 1
    (tmp_path / 'monitoring' / 'prometheus').mkdir(parents=True)
    (tmp_path / 'monitoring' / 'prometheus' / 'rules.yaml').write_text(text.replace(right, wrong))
    (tmp_path / 'tests' / 'monitoring').mkdir(parents=True)
    cases = shutil.copy(prometheus.RULES_TESTS, tmp_path / 'tests' / 'monitoring')
    tested = _run(promtool, 'test', 'rules', str(cases))
    assert tested.returncode == 1
    assert {alert} == set(re.findall(r'alertname: (\w+)', tested.stdout + tested.stderr))


# What each alert's summary must name, so that whoever receives it knows what and where.
NAMES = {
    'TaxiServingErrorRateHigh': ['model_name'],
    'TaxiServingLatencyHigh': ['model_name'],
    'TaxiServingRequestLogDropped': ['instance', 'reason'],
    'TaxiServingRequestLogBlocking': ['instance'],
    'TaxiServingModelLoadFailed': ['model_name', 'instance'],
    'TaxiServingNoVersionAvailable': ['model_name', 'instance'],
    'TaxiGatewayUpstreamDisconnected': ['instance'],
    'TaxiServingCallerRateLimited': ['instance', 'caller'],
    'TaxiMonitorDistanceAboveThreshold': ['model_version', 'feature', 'kind'],
    'TaxiMonitorLiveMetricBelowMinimum': ['model_version', 'metric'],
    'TaxiMonitorEstimatedPerformanceLow': ['model_version', 'metric'],
    'TaxiMonitorOutlierRateHigh': ['model_version'],
    'TaxiMonitorPassAlerted': ['model_version'],
    'TaxiMonitorAbusiveCaller': ['caller', 'reason'],
    'TaxiMonitorPassesStopped': [],
    'TaxiMonitorNeverReported': [],
}


def test_every_alert_says_how_bad_what_and_where():
    alerts = prometheus.alerts()
    assert set(alerts) == set(NAMES)
    for name, rule in alerts.items():
        assert rule['labels']['severity'] in SEVERITIES, name
        assert 'for' in rule, f'{name}: say how long it must hold, even if 0m'
        summary, description = rule['annotations']['summary'], rule['annotations']['description']
        assert summary.strip() and len(description) > len(summary), name
        for label in NAMES[name]:
            assert f'$labels.{label}' in summary, f'{name}: the summary does not name the {label}'


def test_the_runbook_has_a_line_for_every_alert():
    with open(os.path.join(REPO, 'docs', 'monitoring.md')) as f:
        runbook = f.read().split('## Alerts in Prometheus', 1)[1]
    for name in prometheus.alerts():
        assert re.search(rf'^\| `{name}` \|', runbook, re.M), f'{name} has no line in docs/monitoring.md'


def test_the_operator_manifest_holds_the_same_rules(tmp_path):
    made = tmp_path / 'prometheusrule.yaml'
    result = _run('make', '-s', 'prometheus-rule', f'PROMETHEUS_RULE={made}')
    assert result.returncode == 0, result.stderr
    with open(prometheus.RULE_MANIFEST) as f:
        committed = f.read()
    assert committed == made.read_text(), 'monitoring/k8s/prometheusrule.yaml is stale: run `make prometheus-rule`'
    manifest = yaml.safe_load(committed)
    assert (manifest['apiVersion'], manifest['kind']) == ('monitoring.coreos.com/v1', 'PrometheusRule')
    assert manifest['spec'] == prometheus.rules()
    with open(os.path.join(REPO, 'monitoring', 'kustomization.yaml')) as f:
        assert 'k8s/prometheusrule.yaml' in yaml.safe_load(f)['resources']


def _server_error_codes():
    record = 'job_model:tfserving_server_errors:rate5m'
    (expr,) = [r['expr'] for r in prometheus.rule_list() if r.get('record') == record]
    return set(re.search(r'code=~"([^"]+)"', expr).group(1).split('|'))


def test_server_errors_are_the_codes_answered_with_a_5xx():
    from serving.errors import HTTP_STATUS
    assert _server_error_codes() == {code.name for code, status in HTTP_STATUS.items() if status >= 500}


def test_the_latency_limit_is_the_one_a_version_met_before_its_push():
    from components.infra_validator.checks import Limits
    expr = prometheus.alerts()['TaxiServingLatencyHigh']['expr']
    assert float(expr.rpartition('>')[2]) == Limits().max_p99_ms / 1000


def test_the_rules_name_only_metrics_that_are_exported_or_recorded():
    known = prometheus.exported_names() | prometheus.recorded()
    for rule in prometheus.rule_list():
        unknown = prometheus.metric_names(rule['expr']) - known
        assert not unknown, f'{rule.get("alert") or rule.get("record")}: no such metric {sorted(unknown)}'
    # Every recording rule is used, by an alert or the dashboard.
    used = set().union(*(prometheus.metric_names(r['expr']) for r in prometheus.rule_list()),
                       *(prometheus.metric_names(prometheus.grafana_substituted(e))
                         for _, e in prometheus.dashboard_queries(prometheus.dashboard())))
    assert prometheus.recorded() <= used


# -- the monitor's gauges that the rules compare with: its limits and when it ran -----------------------

def _report(version, live=None, outlier_rate=0.01):
    from monitoring import monitor
    return monitor.VersionReport(version=version, examples=2000, previous_examples=2000, serving_statistics=None,
                                 training_statistics=None, skew=[], drift=[], prediction_drift=None,
                                 outlier_rate=outlier_rate, live=live)


def _live(examples, positives, accuracy, auc):
    from monitoring import live_metrics
    return live_metrics.LiveMetrics(examples, positives, accuracy, (accuracy - 0.05, accuracy + 0.05), auc,
                                    (auc - 0.05, auc + 0.05), 0.5, positives / examples, 0.1, [])


def _series(registry):
    return {(m.name, tuple(sorted(s.labels.items()))): s.value for m in registry.collect() for s in m.samples}


@pytest.mark.parametrize('live', [
    _live(750, 300, 0.073, 0.0275),  # judged, both low
    _live(750, 5, 0.2, 0.1),  # accuracy judged and low; AUC low but one class too rare to judge it
    _live(60, 30, 0.1, 0.1),  # too few labels to judge anything
    _live(750, 300, 0.9, 0.95),  # judged, both fine
])
def test_a_live_metric_is_below_its_exported_minimum_exactly_when_the_pass_alerts(live):
    from monitoring import commands, monitor
    settings = monitor.Settings('logs', 'models', 0, 3600, 'probabilities', 'is_outlier')
    report = _report(7, live)
    report.alerts = monitor._alerts(report, settings)
    series = _series(commands.gauges([report], settings))
    alerted = {a['metric'] for a in report.alerts if a['alert'] == 'live_metric'}
    below = {metric for metric in ('auc', 'accuracy')
             if ('taxi_monitor_live_metric_minimum', (('metric', metric), ('model_version', '7'))) in series
             and series['taxi_monitor_live_metric', (('metric', metric), ('model_version', '7'))]
             < series['taxi_monitor_live_metric_minimum', (('metric', metric), ('model_version', '7'))]}
    assert below == alerted


def _estimate(examples, accuracy, auc):
    """An estimate (performance_estimation.Estimate) with intervals of +-0.05 around each value given."""
    from monitoring import performance_estimation as estimation

    def metric(name, value):
        return estimation.MetricEstimate(name, value, None if value is None else (value - 0.05, value + 0.05),
                                         0.01, 0.9)
    return estimation.Estimate(examples, 0.3, metric('accuracy', accuracy), metric('auc', auc))


@pytest.mark.parametrize('estimate', [
    _estimate(750, 0.55, 0.62),  # judged, both low
    _estimate(750, 0.58, None),  # accuracy low; AUC undefined (one class expected): no value, nothing judged
    _estimate(60, 0.3, 0.3),  # too few served examples to judge
    _estimate(750, 0.62, 0.75),  # judged, both fine though their intervals reach below the minimums
])
def test_an_estimate_is_below_its_exported_minimum_exactly_when_the_pass_alerts(estimate):
    from monitoring import before_labels, commands, monitor
    settings = monitor.Settings('logs', 'models', 0, 3600, 'probabilities', 'is_outlier')
    report = _report(7)
    report.estimation = before_labels.Findings(estimate)
    report.alerts = monitor._alerts(report, settings)
    series = _series(commands.gauges([report], settings))

    def value(name, metric):
        return series.get((name, (('metric', metric), ('model_version', '7'))))
    alerted = {a['metric'] for a in report.alerts if a['alert'] == 'estimated_performance'}
    below = {metric for metric in ('accuracy', 'auc') if value('taxi_monitor_estimated_metric_minimum', metric)
             is not None and value('taxi_monitor_estimated_metric', metric)
             < value('taxi_monitor_estimated_metric_minimum', metric)}
    assert below == alerted
    for m in estimate.metrics:
        if m.value is None:
            assert value('taxi_monitor_estimated_metric', m.metric) is None
            continue
        assert value('taxi_monitor_estimated_metric', m.metric) == m.value
        assert (value('taxi_monitor_estimated_metric_lower', m.metric),
                value('taxi_monitor_estimated_metric_upper', m.metric)) == m.interval


def test_label_rates_and_concept_drift_are_exported_when_labels_judged_them():
    from monitoring import before_labels, commands, label_drift, performance_estimation as estimation
    estimate = _estimate(750, 0.89, 0.95)
    labels = [1] * 40 + [0] * 160
    comparisons = [estimation.Comparison('accuracy', 0.89, (0.87, 0.91), 0.74),
                   estimation.Comparison('auc', 0.95, (0.93, 0.97), 0.94)]
    moved = label_drift.label_drift(labels, 0.4, 5000)
    concept = label_drift.concept_drift(comparisons, _estimate(200, 0.89, 0.95), inputs_drifted=False)
    labelled, unlabelled = _report(7), _report(8)
    labelled.estimation = before_labels.Findings(estimate, _estimate(200, 0.89, 0.95), comparisons, moved, concept)
    unlabelled.estimation = before_labels.Findings(estimate)
    series = _series(commands.gauges([labelled, unlabelled]))
    assert series['taxi_monitor_label_rate', (('model_version', '7'), ('source', 'feedback'))] == 0.2
    assert series['taxi_monitor_label_rate', (('model_version', '7'), ('source', 'training'))] == 0.4
    assert concept.signal and series['taxi_monitor_concept_drift', (('model_version', '7'),)] == 1
    # Without labels nothing was judged: no series, rather than a 0 that says "judged, fine".
    assert not [key for key in series if key[0] in ('taxi_monitor_label_rate', 'taxi_monitor_concept_drift')
                and ('model_version', '8') in key[1]]
    # Without settings there are no limits to export.
    assert not [key for key in series if key[0] == 'taxi_monitor_estimated_metric_minimum']


def test_the_outlier_limit_and_the_time_of_the_pass_are_exported():
    from monitoring import commands, monitor
    settings = monitor.Settings('logs', 'models', 0, 3600, 'probabilities', 'is_outlier', max_outlier_rate=0.02)
    before = time.time()
    series = _series(commands.gauges([_report(7, outlier_rate=0.5), _report(8, outlier_rate=None)], settings))
    assert series['taxi_monitor_max_outlier_rate', (('model_version', '7'),)] == 0.02
    # A version with no outlier rate (its answers carry no flags) has no limit to be compared with.
    assert ('taxi_monitor_max_outlier_rate', (('model_version', '8'),)) not in series
    assert before <= series['taxi_monitor_last_pass_timestamp_seconds', ()] <= time.time()
