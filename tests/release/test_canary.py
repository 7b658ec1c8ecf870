"""The canary judged on live traffic with known labels, and releases that move traffic under load
without a failed request."""

import contextlib
import json
import random

import numpy as np
import pytest

from serving import feedback
from serving.gateway import GatewayServer, GatewaySettings
from serving.server import ModelServer, ServerSettings
from support.polling import wait_for
from support.release_users import ALICE, BOB, EVALUATOR
from support.samples import SAMPLE_ROWS, as_dicts
from support.served_traffic import LogWriter
from support.serving_load import LoadGenerator
from taxi_model import contract

pytestmark = pytest.mark.e2e


MODEL_NAME = 'chicago-taxi'


@pytest.fixture(scope='module')
def held_out_rows(taxi_rows):
    """Rows of the sample no run trained on, each with a fare and so a known label."""
    header, rows = taxi_rows
    fare = header.index('fare')
    return as_dicts(header, [row for row in rows[SAMPLE_ROWS:] if row[fare]][:600])


def _serve_and_label(workspace, rows, version, log_dir, feedback_dir, name, wrong_share):
    """Logs `rows` as answered by `version` now, in requests of 50, and stores their labels as feedback,
    a `wrong_share` of them flipped (ground truth that disagrees with how the version ranks them)."""
    writer = LogWriter(workspace.versions.base_path, version)
    flip = random.Random(version)
    store = feedback.FeedbackStore(feedback_dir)
    for start in range(0, len(rows), 50):
        batch = rows[start:start + 50]
        request_id = f'{name}-{start}'
        writer.write(log_dir, batch, feedback.now_micros(), request_id)
        truth = contract.labels_from_feedback({'tips': np.array([float(r['tips'] or 'nan') for r in batch])},
                                              {'fare': np.array([float(r['fare']) for r in batch])})
        items = [{'request_id': request_id, 'example': i, 'label': int(label) ^ (flip.random() < wrong_share)}
                 for i, label in enumerate(truth)]
        store.append(feedback.parse_all(items), source='test')


def _evaluate(workspace, capsys, tmp_path, *argv):
    capsys.readouterr()
    code = workspace.canary('evaluate', '--json', '--request-log-dir', tmp_path / 'logs', '--feedback-dir',
                            tmp_path / 'feedback', '--min-labelled', 200, *argv)
    assert code == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _traffic(workspace, rows, tmp_path, stable_wrong, canary_wrong):
    v = workspace.versions
    for version, wrong, name in ((v.first, stable_wrong, 'stable'), (v.drifted, canary_wrong, 'canary')):
        _serve_and_label(workspace, rows, version, str(tmp_path / 'logs'), str(tmp_path / 'feedback'), name, wrong)


def test_too_little_feedback_decides_nothing(workspace, held_out_rows, capsys, tmp_path):
    workspace.release_both()
    _traffic(workspace, held_out_rows[:100], tmp_path, stable_wrong=0.0, canary_wrong=0.0)
    verdict = _evaluate(workspace, capsys, tmp_path, '--auto', *workspace.identities.flags(EVALUATOR))
    assert verdict['recommendation'] == 'wait' and verdict['acted'] is None
    assert any('100 labelled examples of the 200 needed' in reason for reason in verdict['reasons'])
    assert workspace.serving()[1] == 20.0


def test_a_worse_canary_is_rolled_back(workspace, held_out_rows, capsys, tmp_path):
    v = workspace.versions
    workspace.release_both()
    _traffic(workspace, held_out_rows, tmp_path, stable_wrong=0.0, canary_wrong=0.35)
    verdict = _evaluate(workspace, capsys, tmp_path, '--auto', *workspace.identities.flags(EVALUATOR))
    assert verdict['recommendation'] == 'rollback' and verdict['acted']['done']
    auc = next(d for d in verdict['differences'] if d['metric'] == 'auc')
    assert auc['difference'] < 0 and auc['p_worse'] < 0.05
    assert verdict['canary']['labelled'] == verdict['stable']['labelled'] == len(held_out_rows)
    # All traffic back on the stable version, and the decision recorded with its evidence.
    assert workspace.serving() == ({'stable': v.first}, 0.0)
    capsys.readouterr()
    assert workspace.models('history', '--json') == 0
    last = json.loads(capsys.readouterr().out)['decisions'][-1]
    assert (last['action'], last['version'], last['actor']) == ('withdraw', v.drifted, EVALUATOR)
    assert last['evidence']['canary_test']['recommendation'] == 'rollback'


def test_a_better_canary_is_promoted_once_someone_approved_it(workspace, held_out_rows, capsys, tmp_path):
    v = workspace.versions
    workspace.release_both()
    _traffic(workspace, held_out_rows, tmp_path, stable_wrong=0.35, canary_wrong=0.0)
    verdict = _evaluate(workspace, capsys, tmp_path, '--auto', *workspace.identities.flags(EVALUATOR))
    # Better on the evidence, but stable needs an approval: recommended, not done.
    assert verdict['recommendation'] == 'promote' and not verdict['acted']['done']
    assert 'has no approval' in verdict['acted']['why']
    assert workspace.serving()[0]['stable'] == v.first

    assert workspace.models('approve', v.drifted, '--drift-reviewed', '--reason', 'reviewed the hour shift',
                            user=ALICE) == 0
    verdict = _evaluate(workspace, capsys, tmp_path, '--auto', *workspace.identities.flags(EVALUATOR))
    assert verdict['recommendation'] == 'promote' and verdict['acted']['done']
    assert workspace.serving() == ({'stable': v.drifted, 'rollback': v.first}, 0.0)
    capsys.readouterr()
    assert workspace.canary('status') == 0
    assert 'no canary' in capsys.readouterr().out


@pytest.mark.parametrize('front', ['embedded server', 'gateway in front of it'])
def test_promotion_and_rollback_under_load_fail_no_request(workspace, held_out_rows, front):
    v = workspace.versions
    workspace.release_both()
    # The embedded server splits itself; in front of it, the gateway splits and the server stands in for TF
    # Serving (which follows the model config's labels and has no split).
    gateway = front != 'embedded server'
    settings = ServerSettings.from_config_file(workspace.serving_config, rest_port=0, grpc_port=0, poll_seconds=0.1,
                                               config_poll_seconds=0.1,
                                               traffic_config_file=None if gateway else workspace.traffic_config)
    with ModelServer(settings) as server, contextlib.ExitStack() as stack:
        url = f'http://127.0.0.1:{server.rest_port}'
        if gateway:
            server = stack.enter_context(GatewayServer(GatewaySettings(
                upstream=f'127.0.0.1:{server.grpc_port}', rest_port=0, grpc_port=0,
                traffic_config_file=workspace.traffic_config, traffic_check_seconds=0.1)))
        with LoadGenerator(server, held_out_rows[:200], MODEL_NAME) as load:
            # Unaddressed requests: both versions answer while the canary takes its share.
            wait_for(lambda: {v.first, v.drifted} <= set(load.versions), timeout=60)
            assert workspace.models('approve', v.drifted, '--drift-reviewed', '--reason', 'ok', user=ALICE) == 0
            assert workspace.models('promote', v.drifted, '--to', 'stable', '--reason', 'canary held up',
                                    '--server', url, user=BOB) == 0
            wait_for(lambda: load.versions[-8:] == [v.drifted] * 8, timeout=30)
            promoted_at = len(load.versions)

            # One command: the previous stable, still loaded under `rollback`, takes all the traffic.
            assert workspace.models('rollback', '--reason', 'tips complaints', '--server', url, user=BOB) == 0
            wait_for(lambda: load.versions[-8:] == [v.first] * 8, timeout=30)
            served = load.count
            wait_for(lambda: load.count > served + 50)
    assert load.failures == []
    after_promotion = load.versions[promoted_at:]
    assert v.drifted in after_promotion and after_promotion[-1] == v.first
