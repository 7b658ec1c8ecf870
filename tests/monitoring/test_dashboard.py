"""The Grafana dashboard (monitoring/grafana/taxi-serving-monitoring.json): every query is PromQL that
promtool parses, names only metrics the server, the gateway and the monitor export or the rules record,
and uses only variables the dashboard defines; it shows what serving and the monitor are watched by, and
every gauge the monitor pushes (its callers and its estimates before labels included).
That each query also runs against a real Prometheus is test_prometheus_live.py's."""

import re
import subprocess

import pytest
import yaml

from support import prometheus

pytestmark = pytest.mark.unit

# What the dashboard is for: each of these is queried by some panel.
SHOWN = {
    'tfserving_requests_total', 'job_model:tfserving_server_errors:ratio_rate5m',
    'job_model:tfserving_request_latency_seconds:p50_5m', 'job_model:tfserving_request_latency_seconds:p99_5m',
    'instance:tfserving_request_log_dropped:increase5m', 'tfserving_model_version_available',
    'tfserving_traffic_split_total', 'tfserving_upstream_connected',
    'taxi_monitor_distance', 'taxi_monitor_threshold', 'taxi_monitor_live_metric',
    'taxi_monitor_live_metric_minimum', 'taxi_monitor_outlier_rate', 'taxi_monitor_examples',
    'taxi_monitor_last_pass_timestamp_seconds',
    # Callers (monitoring/callers.py add_gauges) and the servers' per-caller rate limit (serving/rate_limit.py).
    'taxi_monitor_callers', 'taxi_monitor_abusive_callers', 'taxi_monitor_caller_flagged',
    'taxi_monitor_caller_request_rate', 'taxi_monitor_caller_example_rate', 'taxi_monitor_caller_outlier_share',
    'taxi_monitor_caller_near_duplicate_share', 'taxi_monitor_caller_shapiro_w',
    'taxi_monitor_caller_near_threshold_share', 'tfserving_rate_limited_total',
    # Before labels (monitoring/before_labels.py, pushed by monitoring/commands.py gauges).
    'taxi_monitor_estimated_metric', 'taxi_monitor_estimated_metric_lower', 'taxi_monitor_estimated_metric_upper',
    'taxi_monitor_estimated_metric_minimum', 'taxi_monitor_label_rate', 'taxi_monitor_concept_drift',
}


@pytest.fixture(scope='module')
def board():
    return prometheus.dashboard()


@pytest.fixture(scope='module')
def queries(board):
    return [(title, prometheus.grafana_substituted(expr)) for title, expr in prometheus.dashboard_queries(board)]


def test_every_query_parses(queries, tmp_path):
    """As recording rules, so that `promtool check rules` parses each one (this promtool has no command
    that parses a bare query)."""
    rules = {'groups': [{'name': 'dashboard', 'rules': [
        {'record': f'dashboard:query_{i}', 'expr': expr} for i, (_, expr) in enumerate(queries)]}]}
    path = tmp_path / 'dashboard_rules.yaml'
    path.write_text(yaml.safe_dump(rules))
    checked = subprocess.run([prometheus.tool('promtool'), 'check', 'rules', str(path)], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f'SUCCESS: {len(queries)} rules found' in checked.stdout


def test_a_query_that_is_not_promql_is_caught(tmp_path):
    path = tmp_path / 'broken.yaml'
    path.write_text(yaml.safe_dump({'groups': [{'name': 'g', 'rules': [
        {'record': 'r', 'expr': 'sum by (code) (rate(tfserving_requests_total[5m])'}]}]}))
    checked = subprocess.run([prometheus.tool('promtool'), 'check', 'rules', str(path)], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 1 and 'unclosed left parenthesis' in checked.stdout + checked.stderr


def test_it_names_only_metrics_that_are_exported_or_recorded(queries):
    known = prometheus.exported_names() | prometheus.recorded()
    for title, expr in queries:
        unknown = prometheus.metric_names(expr) - known
        assert not unknown, f'{title}: no such metric {sorted(unknown)} in {expr}'


def test_it_shows_serving_and_the_monitor(queries):
    shown = set().union(*(prometheus.metric_names(expr) for _, expr in queries))
    assert SHOWN <= shown, f'not shown: {sorted(SHOWN - shown)}'


def test_every_gauge_the_monitor_pushes_has_a_panel(queries):
    """Read off the monitor's own registry (commands.gauges), so a gauge added there without a panel fails
    here."""
    shown = set().union(*(prometheus.metric_names(expr) for _, expr in queries))
    pushed = {name for name in prometheus.exported_names() if name.startswith('taxi_monitor_')}
    assert pushed <= shown, f'no panel shows {sorted(pushed - shown)}'


def test_every_panel_queries_the_chosen_data_source_and_has_its_place(board):
    variables = {v['name']: v for v in board['templating']['list']}
    assert variables['datasource']['type'] == 'datasource' and variables['datasource']['query'] == 'prometheus'
    cells = set()
    ids = [p['id'] for p in prometheus.panels(board)]
    assert len(ids) == len(set(ids))
    for panel in prometheus.panels(board):
        box = panel['gridPos']
        assert box['x'] + box['w'] <= 24, panel['title']
        taken = {(x, y) for x in range(box['x'], box['x'] + box['w']) for y in range(box['y'], box['y'] + box['h'])}
        assert not taken & cells, f'{panel["title"]} overlaps another panel'
        cells |= taken
        if panel['type'] == 'row':
            continue
        assert panel['datasource'] == {'type': 'prometheus', 'uid': '${datasource}'}, panel['title']
        assert panel['targets'] and panel.get('description'), panel['title']
        for target in panel['targets']:
            # Grafana's own variables start with __.
            used = {v for v in re.findall(r'\$\{?(\w+)', target['expr']) if not v.startswith('__')}
            assert used <= set(variables), f'{panel["title"]}: undefined variables {used - set(variables)}'
            assert target['datasource'] == panel['datasource']
