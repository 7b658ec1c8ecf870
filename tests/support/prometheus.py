"""The Prometheus side of the tests: the real promtool and prometheus (Debian's package `prometheus`, which
`make test` installs), the rules and the dashboard as files, and which metric names a PromQL expression
or a scrape holds."""

import functools
import json
import os
import re
import shutil
from typing import Dict, Iterator, List, Set, Tuple

import pytest
import yaml

from support.repo_files import REPO

RULES = os.path.join(REPO, 'monitoring', 'prometheus', 'rules.yaml')
RULES_TESTS = os.path.join(REPO, 'tests', 'monitoring', 'alert_rules_test.yaml')
RULE_MANIFEST = os.path.join(REPO, 'monitoring', 'k8s', 'prometheusrule.yaml')
DASHBOARD = os.path.join(REPO, 'monitoring', 'grafana', 'taxi-serving-monitoring.json')

# What Grafana puts in place of the dashboard's variables before it sends a query.
GRAFANA_VALUES = {'model': '.*', 'model_version': '.*', '__rate_interval': '5m', '__interval': '1m',
                  '__range': '1h'}

_KEYWORDS = {'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless',
             'offset', 'inf', 'nan', 'atan2'}


def tool(name: str) -> str:
    """The path of promtool or prometheus; the test fails (it never skips) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f'{name} is not installed: run `make test` (or `make prometheus-tools`), which installs '
                    "Debian's package prometheus (promtool and prometheus)")
    return path


def rules() -> dict:
    with open(RULES) as f:
        return yaml.safe_load(f)


def rule_list() -> List[dict]:
    return [rule for group in rules()['groups'] for rule in group['rules']]


def alerts() -> Dict[str, dict]:
    return {rule['alert']: rule for rule in rule_list() if 'alert' in rule}


def recorded() -> Set[str]:
    return {rule['record'] for rule in rule_list() if 'record' in rule}


def metric_names(expr: str) -> Set[str]:
    """The metric names a PromQL expression selects: what is left once strings, label matchers, ranges,
    label lists and function calls are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r'\{[^{}]*\}', ' ', text)
    text = re.sub(r'\[[^\[\]]*\]', ' ', text)
    text = re.sub(r'\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)', ' ', text)
    names = set()
    for match in re.finditer(r'(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?', text):
        name, call = match.groups()
        if not call and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def exposed_names(exposition: str) -> Set[str]:
    """The series names a scrape of this text can hold, from its TYPE lines: a labelled metric that has
    no series yet still declares its family."""
    names = set()
    for name, kind in re.findall(r'^# TYPE (\S+) (\S+)$', exposition, re.M):
        if kind == 'histogram':
            names |= {f'{name}_bucket', f'{name}_sum', f'{name}_count'}
        elif kind == 'summary':
            names |= {name, f'{name}_sum', f'{name}_count'}
        else:
            names.add(name)
    return names


@functools.lru_cache(maxsize=None)
def exported_names() -> frozenset:
    """Every series name the server, the gateway and the monitor can export, read off their expositions
    (a labelled metric with no series yet still declares its family)."""
    import prometheus_client as prom
    from monitoring import commands
    from serving.telemetry import Metrics
    from serving.upstream import Upstream
    metrics = Metrics()
    upstream = Upstream('127.0.0.1:1', metrics)  # the gateway's metrics; nothing listens there, none is needed
    try:
        serving = prom.generate_latest(metrics.registry).decode()
    finally:
        upstream.close()
    monitor = prom.generate_latest(commands.gauges([])).decode()
    return frozenset(exposed_names(serving) | exposed_names(monitor))


def dashboard() -> dict:
    with open(DASHBOARD) as f:
        return json.load(f)


def panels(board: dict) -> Iterator[dict]:
    for panel in board['panels']:
        yield panel
        yield from panel.get('panels', [])  # a collapsed row holds its panels


def dashboard_queries(board: dict) -> List[Tuple[str, str]]:
    """(panel title, PromQL) of every query: the panels' targets and the variables' queries."""
    found = [(panel['title'], target['expr']) for panel in panels(board) for target in panel.get('targets', [])]
    for variable in board.get('templating', {}).get('list', []):
        query = variable.get('query')
        if variable['type'] == 'query':
            text = query['query'] if isinstance(query, dict) else query
            # label_values(METRIC, LABEL) is Grafana's, not PromQL: its selector is.
            match = re.fullmatch(r'label_values\((.+),\s*\w+\)', text)
            found.append((f'variable {variable["name"]}', match.group(1) if match else text))
    return found


def grafana_substituted(expr: str) -> str:
    def value(match):
        name = match.group(1) or match.group(2)
        if name not in GRAFANA_VALUES:
            raise AssertionError(f'{expr}: no value for the variable {name} (GRAFANA_VALUES)')
        return GRAFANA_VALUES[name]
    return re.sub(r'\$\{(\w+)(?::\w+)?\}|\$(\w+)', value, expr)
