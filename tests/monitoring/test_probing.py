"""A crowd and probers against the real server over loopback (serving/, monitoring/callers.py): a
crowd of normal callers replays taxi trips at a human pace while a line walker, a boundary
searcher (asking the server itself where the boundary is) and a duplicator probe the model and a
flooder hammers it. The rate limit answers the flooder 429 while every crowd request is served;
the request log names every caller, and the abuse monitor, reading that log as the monitor does,
names each prober and no one in the crowd."""

import json
import os
import shutil
import random
import threading
import time

import pytest
import requests
import tensorflow as tf
import tensorflow_data_validation as tfdv
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_metadata.proto.v0 import schema_pb2

import schemas
from foundation.model_files import SCHEMA_FILE
from monitoring import commands as monitoring_commands, monitor, report as monitoring_report
from monitoring import callers, request_logs
from serving import METRICS_PATH, access
from serving.rate_limit import RateLimit
from serving.server import ModelServer, ServerSettings
from support import probing
from support.tf_serving_models import settle

pytestmark = pytest.mark.component

MODEL = 'tipper'
PREDICT = f'/v1/models/{MODEL}:predict'
CROWD = [f'client-{i:02d}' for i in range(8)]
FLOODER = 'flooder'
# The crowd sends about 10 requests a second each, the probers about 30: all under the limit; the
# flooder as fast as it can.
LIMIT = RateLimit(per_second=50, burst=50)


@pytest.fixture(scope='module')
def base_path(tmp_path_factory):
    base = tmp_path_factory.mktemp('models') / MODEL
    module = probing.tipper_module()
    tf.saved_model.save(module, str(base / '1'), signatures={'serving_default': module.predict})
    os.makedirs(base / '1' / 'assets.extra', exist_ok=True)
    (base / '1' / 'assets.extra' / 'missing_values.json').write_text(json.dumps(probing.MISSING_VALUES))
    # The schema a pushed version carries, so that the monitoring pass judges its traffic.
    shutil.copy(schemas.CURATED_SCHEMA, base / '1' / SCHEMA_FILE)
    settle(base)
    return str(base)


@pytest.fixture(scope='module')
def tokens(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('auth') / 'tokens.json')
    names = CROWD + list(probing.PROBERS) + [FLOODER]
    return path, {name: access.add_token(path, name, {'predict'}) for name in names}


@pytest.fixture(scope='module')
def trips():
    return probing.taxi_trips()


class Caller:
    """One caller's connection: its token, its answers' status codes and Retry-After headers."""

    def __init__(self, server, token):
        self.session = requests.Session()
        self.session.headers['Authorization'] = f'Bearer {token}'
        self.url = f'http://127.0.0.1:{server.rest_port}{PREDICT}'
        self.statuses, self.retry_after = [], []

    def predict(self, trips):
        answer = self.session.post(self.url, data=json.dumps({'instances': [probing.instance(t) for t in trips]}),
                                   timeout=60)
        self.statuses.append(answer.status_code)
        if answer.status_code == 429:
            assert list(answer.json()) == ['error']
            self.retry_after.append(answer.headers['Retry-After'])
            return None
        assert answer.status_code == 200, answer.text
        return [p[0] if isinstance(p, list) else p for p in
                (row['probabilities'] for row in answer.json()['predictions'])]


def _play(server, secrets, trips, seed):
    """Runs every caller at once; returns {name: Caller}."""
    rng = random.Random(seed)
    crowd = probing.crowd(trips, rng, len(CROWD), 40)
    schedules = {name: requests_ for name, requests_ in zip(CROWD, crowd.values())}
    line = probing.in_requests(probing.line_walk(trips, rng, 300), 5)
    duplicates = probing.in_requests(probing.near_duplicates(trips, rng, 300), 3)
    boundary_rng = random.Random(rng.random())
    callers_ = {name: Caller(server, secrets[name]) for name in secrets}
    stop_flood = threading.Event()

    def paced(name, requests_, pause):
        pace = random.Random(f'{seed}-{name}')
        for trips_ in requests_:
            callers_[name].predict(trips_)
            time.sleep(pace.uniform(*pause))

    def search():
        searcher = callers_['boundary-searcher']
        asked = []

        def predict(trip):  # the server's answer, one trip per request, at the prober's pace
            asked.append(trip)
            time.sleep(0.03)
            return searcher.predict([trip])[0]
        # The walk's steps around each boundary found go in one request.
        sent = probing.boundary_search(trips, boundary_rng, 300, predict=predict)
        rest = [t for t in sent if not any(t is a for a in asked)]
        for batch in probing.in_requests(rest, 9):
            searcher.predict(batch)

    def flood():
        flooder = callers_[FLOODER]
        while not stop_flood.is_set():
            flooder.predict([trips[0]])

    workers = [threading.Thread(target=paced, args=(name, schedules[name], (0.05, 0.15))) for name in CROWD]
    workers += [threading.Thread(target=paced, args=('line-walker', line, (0.02, 0.04))),
                threading.Thread(target=paced, args=('duplicator', duplicates, (0.02, 0.04))),
                threading.Thread(target=search)]
    flooders = [threading.Thread(target=flood) for _ in range(2)]
    for thread in workers + flooders:
        thread.start()
    for thread in workers:
        thread.join()
    stop_flood.set()
    for thread in flooders:
        thread.join()
    return callers_


def prometheus_text(registry) -> str:
    return generate_latest(registry).decode()


def _metric(server, name, **labels):
    text = requests.get(f'http://127.0.0.1:{server.rest_port}{METRICS_PATH}', timeout=30).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


@pytest.mark.parametrize('seed', [0, 1])
def test_the_flooder_is_limited_the_probers_are_named_and_the_crowd_is_served_and_left_alone(
        base_path, tokens, trips, tmp_path, seed):
    path, secrets = tokens
    log_dir = str(tmp_path / 'log')
    server = ModelServer(ServerSettings.for_model(base_path, rest_port=0, grpc_port=0, poll_seconds=0,
                                                  auth_tokens_file=path, rate_limit=LIMIT,
                                                  request_log_dir=log_dir)).start()
    try:
        played = _play(server, secrets, trips, seed)
        refused = _metric(server, 'tfserving_rate_limited_total', caller=FLOODER)
        others_refused = _metric(server, 'tfserving_rate_limited_total') - refused
    finally:
        server.stop()

    # The rate limit: the flooder refused (429, Retry-After in whole seconds), everyone else served.
    flooder = played[FLOODER]
    assert 429 in flooder.statuses and 200 in flooder.statuses
    assert refused == flooder.statuses.count(429) and all(v.isdigit() and int(v) >= 1 for v in flooder.retry_after)
    assert others_refused == 0
    for name in CROWD + list(probing.PROBERS):
        assert set(played[name].statuses) == {200}, name

    # The monitor's reading of the log, as `monitor` reads it.
    schema = tfdv.load_schema_text(schemas.CURATED_SCHEMA)
    outputs = {'probabilities': schema_pb2.FLOAT, 'is_outlier': schema_pb2.INT}
    tables, skipped, _ = request_logs.read_by_version(
        log_dir, lambda version: request_logs.reading_schema(schema, outputs), 0, 2 ** 62)
    assert not skipped and list(tables) == [1]
    findings = callers.assess(list(tables.values()), callers.feature_columns(schema), 'probabilities', 'is_outlier')
    by_caller = {f.caller: f for f in findings}
    # Every caller is named in the log by its token's name, with what it sent (the refused not logged).
    assert set(by_caller) == set(secrets)
    for name in CROWD + list(probing.PROBERS):
        assert by_caller[name].requests == len(played[name].statuses)
    assert by_caller[FLOODER].requests == flooder.statuses.count(200)

    named = {f.caller: f.reasons for f in findings if f.flagged}
    assert set(probing.PROBERS) <= set(named), named
    assert not set(named) & set(CROWD), named
    assert callers.NEAR_THRESHOLD in named['boundary-searcher']
    assert callers.NEAR_DUPLICATES in named['duplicator']
    # The crowd was judged, not just too small to judge.
    assert all(by_caller[name].shapiro_w is not None for name in CROWD)

    # The monitoring pass itself: the probers are abuse alerts (which the exit code counts), and gauges.
    settings = monitor.Settings(log_dir=log_dir, model_base_path=base_path, end_micros=int((time.time() + 60) * 1e6),
                                window_micros=3_600_000_000, prediction_key='probabilities', outlier_key='is_outlier')
    found = monitor.monitor(settings)
    abuse = {a['caller'] for a in found.alerts if a['alert'] == 'abuse'}
    assert set(probing.PROBERS) <= abuse and not abuse & set(CROWD), abuse
    gauges = prometheus_text(monitoring_commands.gauges(found.reports, None, found.callers))
    assert 'taxi_monitor_caller_flagged{caller="duplicator"' in gauges
    page = monitoring_report.render(found, settings, 'the window')
    assert 'Callers' in page and 'duplicator' in page and 'near_duplicates' in page
