"""A real Prometheus with our rules, scraping the real embedded server and gateway (TF Serving's
half_plus_two) and the gauges of a monitoring pass with known findings, as the Pushgateway would serve
them: every rule evaluates without an error, the recording rules see the traffic, exactly the monitor's
alerts that the pass's findings call for go pending or fire (no serving alert), every dashboard query runs, and
what the servers expose passes `promtool check metrics`. About ten seconds."""

import subprocess

import prometheus_client as prom
import pytest
import requests
import yaml

from components.drift_check.drift import FeatureDrift
from monitoring import before_labels, callers, commands, label_drift, live_metrics, monitor
from monitoring.performance_estimation import Comparison, Estimate, MetricEstimate
from serving.gateway import GatewayServer, GatewaySettings
from serving.server import ModelServer, ServerSettings
from support import prometheus
from support.polling import free_port, wait_for
from support.tf_serving_models import HALF_PLUS_TWO, settled_copy

pytestmark = pytest.mark.component

METRICS = 'http://127.0.0.1:{}/monitoring/prometheus/metrics'
# Queried by the dashboard, and empty on a healthy server with no canary split: nothing dropped, nothing
# failed to load, no caller over a rate limit (none is set), no split configured.
ONLY_ON_TROUBLE_OR_A_SPLIT = {'instance:tfserving_request_log_dropped:increase5m',
                              'instance:tfserving_model_load_failures:increase15m', 'tfserving_rate_limited_total',
                              'tfserving_traffic_split_total'}


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    base = settled_copy(HALF_PLUS_TWO, tmp_path_factory.mktemp('models') / 'half_plus_two')
    settings = ServerSettings.for_model(base, rest_port=0, grpc_port=0, poll_seconds=0, settle_seconds=0,
                                        request_log_dir=str(tmp_path_factory.mktemp('request_logs')))
    with ModelServer(settings) as running:
        yield running


@pytest.fixture(scope='module')
def gateway(server):
    running = GatewayServer(GatewaySettings(upstream=f'127.0.0.1:{server.grpc_port}', rest_port=0,
                                            grpc_port=0)).start()
    yield running
    running.stop()


def _drift(feature, value, threshold):
    return FeatureDrift(feature, 'Jensen-Shannon divergence (training quantile buckets)', value, f'{threshold:g}',
                        value > threshold)


@pytest.fixture(scope='module')
def monitor_pass():
    """A pass's gauges over HTTP: version 1796072544 with skew in fare and most examples outliers,
    1796076741 with wrong feedback (live AUC and accuracy far below their minimums, and far below what its
    calibration estimated before the labels: label drift and concept drift, while the estimate itself is above
    the minimums); two callers, one of them flagged as probing and for its near-duplicates."""
    settings = monitor.Settings('logs', 'models', 0, 3600, 'probabilities', 'is_outlier')
    common = dict(serving_statistics=None, training_statistics=None, drift=[], prediction_drift=None)
    skewed = monitor.VersionReport(1796072544, examples=2000, previous_examples=2000, outlier_rate=0.9985,
                                   skew=[_drift('fare', 0.7527, 0.1), _drift('trip_miles', 0.02, 0.1)], **common)
    wrong = live_metrics.LiveMetrics(750, 300, 0.0733, (0.057, 0.094), 0.0275, (0.018, 0.037), 0.5, 0.4, 0.847, [])
    accuracy = MetricEstimate('accuracy', 0.887, (0.870, 0.906), 0.0096, 0.888)
    auc = MetricEstimate('auc', 0.950, (0.934, 0.964), 0.0081, 0.947)
    estimate = Estimate(750, 0.231, accuracy, auc)
    comparisons = [Comparison('accuracy', 0.887, (0.870, 0.906), wrong.accuracy),
                   Comparison('auc', 0.950, (0.934, 0.964), wrong.auc)]
    labels_moved = label_drift.LabelDrift(750, 300, 0.222, 4966, 0.178, (0.142, 0.214), 1e-25, 0.05, 0.01, True)
    concept = label_drift.ConceptDrift(['accuracy', 'auc'], [], inputs_drifted=False, examples=750)
    estimation = before_labels.Findings(estimate, estimate, comparisons, labels_moved, concept)
    misjudged = monitor.VersionReport(1796076741, examples=750, previous_examples=700, outlier_rate=0.0133,
                                      skew=[], live=wrong, estimation=estimation, **common)
    for report in (skewed, misjudged):
        report.alerts = monitor._alerts(report, settings)
    crowd = callers.CallerFinding('dashboard', requests=720, examples=1400, request_rate=0.2, example_rate=0.389,
                                  outlier_share=0.01, crowd_outlier_share=0.012, near_duplicate_share=0.0,
                                  shapiro_w=0.981, distances=1400, near_threshold_share=0.07,
                                  crowd_near_threshold_share=0.08)
    prober = callers.CallerFinding('line-walker', requests=300, examples=300, request_rate=0.0833,
                                   example_rate=0.0833, outlier_share=0.0, crowd_outlier_share=0.01,
                                   near_duplicate_share=0.7, shapiro_w=0.674, distances=300,
                                   near_threshold_share=0.05, crowd_near_threshold_share=0.07,
                                   reasons=('probing', 'near_duplicates'))
    registry = commands.gauges([skewed, misjudged], settings, caller_findings=[crowd, prober])
    httpd, thread = prom.start_http_server(0, addr='127.0.0.1', registry=registry)
    yield httpd.server_port
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


def _get(base, path, **params):
    answer = requests.get(f'{base}{path}', params=params, timeout=10)
    answer.raise_for_status()
    body = answer.json()
    assert body['status'] == 'success', body
    return body['data']


def _predict(port, times):
    for _ in range(times):
        answer = requests.post(f'http://127.0.0.1:{port}/v1/models/half_plus_two:predict',
                               json={'instances': [1.0, 2.0, 5.0]}, timeout=30)
        assert answer.json() == {'predictions': [2.5, 3.0, 4.5]}


@pytest.fixture(scope='module')
def prometheus_url(tmp_path_factory, server, gateway, monitor_pass):
    directory = tmp_path_factory.mktemp('prometheus')
    config = directory / 'prometheus.yml'
    config.write_text(yaml.safe_dump({
        'global': {'scrape_interval': '1s', 'evaluation_interval': '1s'},
        'rule_files': [prometheus.RULES],
        'scrape_configs': [
            {'job_name': 'serving', 'metrics_path': '/monitoring/prometheus/metrics',
             'static_configs': [{'targets': [f'127.0.0.1:{server.rest_port}', f'127.0.0.1:{gateway.rest_port}']}]},
            # As the Pushgateway is scraped: the pushed labels win.
            {'job_name': 'taxi-monitor', 'honor_labels': True,
             'static_configs': [{'targets': [f'127.0.0.1:{monitor_pass}']}]}]}))
    port = free_port()  # Prometheus takes no port 0
    log = open(directory / 'prometheus.log', 'w')
    process = subprocess.Popen([prometheus.tool('prometheus'), f'--config.file={config}',
                                f'--storage.tsdb.path={directory / "data"}', f'--web.listen-address=127.0.0.1:{port}'],
                               stdout=log, stderr=subprocess.STDOUT)
    base = f'http://127.0.0.1:{port}'
    try:
        def ready():
            assert process.poll() is None, (directory / 'prometheus.log').read_text()
            try:
                return requests.get(f'{base}/-/ready', timeout=1).status_code == 200
            except requests.ConnectionError:
                return False
        wait_for(ready, timeout=30)
        # A request's series appears with its first request: scraped once, it must rise for a rate to show.
        _predict(server.rest_port, 1)
        _predict(gateway.rest_port, 1)
        # Both fronts' series scraped (the gateway's upstream is the same server, so it has a gRPC series too).
        def both_scraped():
            found = _get(base, '/api/v1/query', query='tfserving_requests_total')['result']
            return len({r['metric']['instance'] for r in found}) == 2
        wait_for(both_scraped, timeout=30)
        _predict(server.rest_port, 20)
        _predict(gateway.rest_port, 20)
        wait_for(lambda: _get(base, '/api/v1/query', query='job_model:tfserving_requests:rate5m > 0')['result'],
                 timeout=30)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_every_rule_evaluates_without_an_error(prometheus_url):
    def evaluated():
        rules = [r for g in _get(prometheus_url, '/api/v1/rules')['groups'] for r in g['rules']]
        return rules if all(r['health'] != 'unknown' for r in rules) else None
    rules = wait_for(evaluated, timeout=30)
    assert len(rules) == len(prometheus.rule_list())
    assert [(r['name'], r['health'], r.get('lastError', '')) for r in rules] == [
        (r['name'], 'ok', '') for r in rules]


def test_the_recording_rules_see_the_traffic(prometheus_url):
    def value(query):
        (sample,) = _get(prometheus_url, '/api/v1/query', query=query)['result']
        assert sample['metric']['model_name'] == 'half_plus_two' and sample['metric']['job'] == 'serving'
        return float(sample['value'][1])
    assert value('job_model:tfserving_requests:rate5m') > 0
    assert value('job_model:tfserving_server_errors:ratio_rate5m') == 0  # nothing failed: 0, not nothing
    assert 0 < value('job_model:tfserving_request_latency_seconds:p99_5m') < 0.5


def test_the_pass_findings_and_nothing_else_are_alerts(prometheus_url):
    def active():
        alerts = _get(prometheus_url, '/api/v1/alerts')['alerts']
        return alerts if len(alerts) >= 8 else None
    alerts = wait_for(active, timeout=30)
    found = {(a['labels']['alertname'], a['labels'].get('model_version') or a['labels'].get('caller'),
              a['labels'].get('feature') or a['labels'].get('metric') or a['labels'].get('reason'), a['state'])
             for a in alerts}
    assert found == {
        ('TaxiMonitorDistanceAboveThreshold', '1796072544', 'fare', 'pending'),
        ('TaxiMonitorOutlierRateHigh', '1796072544', None, 'pending'),
        ('TaxiMonitorPassAlerted', '1796072544', None, 'pending'),
        ('TaxiMonitorLiveMetricBelowMinimum', '1796076741', 'accuracy', 'pending'),
        ('TaxiMonitorLiveMetricBelowMinimum', '1796076741', 'auc', 'pending'),
        ('TaxiMonitorPassAlerted', '1796076741', None, 'pending'),
        # `for: 0m`: firing from its first evaluation.
        ('TaxiMonitorAbusiveCaller', 'line-walker', 'probing', 'firing'),
        ('TaxiMonitorAbusiveCaller', 'line-walker', 'near_duplicates', 'firing'),
    }
    (skew,) = [a for a in alerts if a['labels']['alertname'] == 'TaxiMonitorDistanceAboveThreshold']
    assert skew['labels']['job'] == 'taxi-monitor' and skew['labels']['kind'] == 'skew'
    # Its own threshold, looked up by every label including the test.
    test = skew['labels']['test']
    assert skew['annotations']['description'].endswith(f'a skew distance of 0.7527 ({test}) for feature fare of model '
                                                       'version 1796072544, above its threshold 0.1.')


def test_every_dashboard_query_runs_and_shows_data(prometheus_url):
    for title, expr in prometheus.dashboard_queries(prometheus.dashboard()):
        def result():
            return _get(prometheus_url, '/api/v1/query', query=prometheus.grafana_substituted(expr))['result']
        result()  # the query runs (a bad one is a 400)
        if not prometheus.metric_names(expr) & ONLY_ON_TROUBLE_OR_A_SPLIT:
            # A panel on a recording rule shows data from the rule's next evaluation after the scrape.
            try:
                wait_for(result, timeout=15)
            except AssertionError:
                pytest.fail(f'{title}: no data for {expr}')


@pytest.mark.parametrize('front', ['server', 'gateway'])
def test_what_the_servers_expose_passes_promtools_lint(front, request, prometheus_url):
    running = request.getfixturevalue(front)
    exposition = requests.get(METRICS.format(running.rest_port), timeout=10).text
    assert 'tfserving_requests_total{' in exposition
    checked = subprocess.run([prometheus.tool('promtool'), 'check', 'metrics'], input=exposition,
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
