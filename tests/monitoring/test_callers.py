"""Who is probing the model (monitoring/callers.py), on request-log tables built in memory: probers
walking a line between two trips, searching the decision boundary, or sending near-duplicates are
named among a crowd replaying the taxi sample, over several seeds, and no normal caller is; the
measures each rests on behave as documented; what the monitor gets (alerts, gauges) names the
caller and stays bounded."""

import random

import numpy as np
import prometheus_client as prom
import pytest
import tensorflow_data_validation as tfdv

import schemas
from foundation import alerts
from monitoring import callers, request_logs
from support import probing

pytestmark = pytest.mark.unit

FEATURES = callers.Features(probing.NUMERIC, probing.CATEGORICAL)


@pytest.fixture(scope='module')
def trips():
    return probing.taxi_trips()


def _traffic(trips, seed, probers, crowd=10, requests=60, queries=300, batch=1):
    rng = random.Random(seed)
    schedules = probing.crowd(trips, rng, crowd, requests)
    for name in probers:
        schedules[name] = probing.in_requests(probing.PROBERS[name](trips, rng, queries), batch)
    return [(caller, schedules[caller][i]) for caller, i in probing.interleave(schedules, rng)]


def _assess(table, **thresholds):
    return callers.assess(table, FEATURES, 'probabilities', 'is_outlier', window_seconds=3600,
                          thresholds=callers.Thresholds(**thresholds))


# -- who is named ---------------------------------------------------------------------------------------

@pytest.mark.parametrize('seed', range(5))
def test_every_prober_is_named_and_no_normal_caller_is(trips, seed):
    findings = _assess(probing.log_table(_traffic(trips, seed, list(probing.PROBERS))))
    named = {f.caller: f.reasons for f in findings if f.flagged}
    assert set(named) == set(probing.PROBERS), named
    # Each for what it did.
    assert callers.PROBING in named['line-walker']
    assert {callers.PROBING, callers.NEAR_THRESHOLD} <= set(named['boundary-searcher'])
    assert callers.NEAR_DUPLICATES in named['duplicator']
    crowd = [f for f in findings if f.caller.startswith('client-')]
    assert len(crowd) == 10 and all(f.shapiro_w > 0.85 for f in crowd)
    # Flagged first.
    assert [f.flagged for f in findings] == sorted((f.flagged for f in findings), reverse=True)


@pytest.mark.parametrize('seed', range(5, 10))
def test_probers_batching_their_queries_are_named_all_the_same(trips, seed):
    findings = _assess(probing.log_table(_traffic(trips, seed, ['line-walker', 'boundary-searcher'], batch=10)))
    assert {f.caller for f in findings if f.flagged} == {'line-walker', 'boundary-searcher'}


def test_a_crowd_alone_raises_nothing_over_many_seeds(trips):
    # 30 seeds of 10 callers: the crowd's W stays above δ (its lowest is what δ was chosen against).
    lowest = 1.0
    for seed in range(100, 130):
        findings = _assess(probing.log_table(_traffic(trips, seed, [], requests=80)))
        assert not [f.caller for f in findings if f.flagged], seed
        lowest = min(lowest, *(f.shapiro_w for f in findings))
    assert lowest > callers.Thresholds().shapiro_delta


def test_outliers_far_above_the_crowds_are_named(trips):
    rng = random.Random(3)
    schedules = probing.crowd(trips, rng, 6, 80)
    # Out-of-domain fares, each a different trip: not near-duplicates, not a line.
    schedules['fuzzer'] = [[dict(rng.choice(trips), fare=rng.uniform(200, 5000))] for _ in range(80)]
    order = probing.interleave(schedules, rng)
    findings = _assess(probing.log_table([(c, schedules[c][i]) for c, i in order]))
    fuzzer = next(f for f in findings if f.caller == 'fuzzer')
    assert callers.OUTLIERS in fuzzer.reasons and fuzzer.outlier_share == 1.0
    assert fuzzer.crowd_outlier_share < 0.05
    assert not [f.caller for f in findings if f.flagged and f.caller != 'fuzzer']


def test_a_caller_with_too_few_queries_is_measured_but_not_judged(trips):
    rng = random.Random(0)
    schedules = probing.crowd(trips, rng, 6, 60)
    schedules['brief'] = [[t] for t in probing.near_duplicates(trips, rng, 20)]
    findings = _assess(probing.log_table([(c, schedules[c][i]) for c, i in probing.interleave(schedules, rng)]))
    brief = next(f for f in findings if f.caller == 'brief')
    assert brief.near_duplicate_share == 1.0 and brief.shapiro_w is None and not brief.flagged


def test_rates_counts_and_shares_are_per_caller_over_the_window(trips):
    rng = random.Random(1)
    requests = [('a', [rng.choice(trips) for _ in range(3)]) for _ in range(10)] + \
        [('b', [rng.choice(trips)]) for _ in range(4)]
    found = {f.caller: f for f in callers.assess(probing.log_table(requests), FEATURES, 'probabilities', 'is_outlier',
                                                 window_seconds=2.0)}
    assert (found['a'].requests, found['a'].examples, found['a'].request_rate, found['a'].example_rate) == \
        (10, 30, 5.0, 15.0)
    assert (found['b'].requests, found['b'].examples) == (4, 4)
    predictions = [probing.tip_probability(t) for _, batch in requests[:10] for t in batch]
    assert found['a'].near_threshold_share == pytest.approx(np.mean([abs(p - 0.5) <= 0.05 for p in predictions]))


def test_logs_written_before_callers_were_logged_read_as_one_unknown_caller(trips):
    rng = random.Random(2)
    requests = [('x', [rng.choice(trips)]) for _ in range(60)]
    findings = _assess(probing.log_table(requests, with_caller=False))
    assert [(f.caller, f.examples) for f in findings] == [(request_logs.UNKNOWN_CALLER, 60)]
    assert callers.assess([], FEATURES, 'probabilities') == []


# -- the measures ----------------------------------------------------------------------------------------

def test_distances_count_spreads_capped_and_categories_as_mismatches():
    numeric = np.array([[0.0, 1.0], [0.5, 1.0], [40.0, np.nan], [np.nan, np.nan]])
    codes = np.array([[0], [1], [0], [0]])
    d = callers.pairwise_distances(numeric, codes)
    assert d[0, 1] == pytest.approx((0.5 + 0 + 1) / 3)
    assert d[0, 2] == pytest.approx((callers.MAX_TERM + 1 + 0) / 3)  # capped; missing on one side counts 1
    assert d[2, 3] == pytest.approx((1 + 0 + 0) / 3)  # missing on both sides counts 0
    assert np.allclose(d, d.T) and np.all(np.diag(d) == 0)
    assert callers.successive_distances(numeric, codes) == pytest.approx([d[0, 1], d[1, 2], d[2, 3]])


def test_prada_keeps_the_minimum_distance_to_the_growing_set_of_the_class():
    points = np.array([[0.0], [0.8], [0.85], [0.3], [0.32]])
    d = callers.pairwise_distances(points, np.zeros((5, 0), int))
    # One class: the first query starts the set; 0.8 joins it (the threshold becomes 0.8), the others are
    # measured against it without joining: 0.32's nearest is 0.0, not 0.3.
    assert callers.prada_distances(d, np.zeros(5, int)).tolist() == pytest.approx([0.8, 0.05, 0.3, 0.32])
    # Classes apart: each class's first query starts its own set.
    assert callers.prada_distances(d, np.array([0, 1, 1, 0, 0])).tolist() == pytest.approx([0.05, 0.3, 0.02])


def test_w_is_near_one_for_normal_distances_low_for_a_machines_and_zero_when_all_equal():
    rng = np.random.default_rng(0)
    assert callers.shapiro_w(rng.normal(5, 1, 300)) > 0.98
    steps = np.concatenate([np.full(280, 0.01) + rng.normal(0, 1e-4, 280), rng.uniform(0.5, 2, 20)])
    assert callers.shapiro_w(steps) < 0.5
    assert callers.shapiro_w(np.full(100, 0.01)) == 0.0


def test_features_come_from_the_schemas_serving_environment():
    found = callers.feature_columns(tfdv.load_schema_text(schemas.CURATED_SCHEMA))
    assert 'tips' not in found.numeric + found.categorical  # the label: not in SERVING
    assert set(found.categorical) == {'payment_type', 'company'}
    assert {'fare', 'trip_miles', 'trip_start_hour'} <= set(found.numeric)
    with pytest.raises(ValueError, match='both numeric and categorical'):
        callers.Features(('fare',), ('fare',))


# -- what the monitor gets ---------------------------------------------------------------------------------

def test_the_alert_names_the_caller_and_its_reasons_and_reads_back(trips):
    findings = _assess(probing.log_table(_traffic(trips, 0, ['duplicator'])))
    records = callers.abuse_alerts(findings, model_version=7)
    assert len(records) == 1
    record = records[0]
    assert record['alert'] == alerts.ABUSE and record['caller'] == 'duplicator' and record['model_version'] == 7
    assert 'near_duplicates' in record['reasons'] and record['near_duplicate_share'] > 0.9
    back = alerts.Alert.from_record(record)
    assert back.kind == alerts.ABUSE and 'caller=duplicator' in back.text()
    assert alerts.ABUSE not in alerts.RETRAIN_KINDS  # a caller's doing, not the model's: nothing to retrain
    assert 'duplicator' in callers.describe(findings[0]) and 'near_duplicates' in callers.describe(findings[0])


def test_gauges_name_the_flagged_and_busiest_callers_only(trips):
    findings = _assess(probing.log_table(_traffic(trips, 1, list(probing.PROBERS), crowd=30, requests=20)))
    registry = prom.CollectorRegistry()
    callers.add_gauges(registry, findings, max_named=5)
    value = registry.get_sample_value
    assert value('taxi_monitor_callers') == 33 and value('taxi_monitor_abusive_callers') == 3
    for name in probing.PROBERS:
        assert value('taxi_monitor_caller_request_rate', {'caller': name}) > 0
    assert value('taxi_monitor_caller_flagged', {'caller': 'duplicator', 'reason': 'near_duplicates'}) == 1
    named = {s.labels['caller'] for metric in registry.collect() for s in metric.samples if 'caller' in s.labels}
    assert len(named) == 5
