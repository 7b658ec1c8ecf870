"""The registry over ML Metadata and the push destination: what each version is, who may move
it where, and a history that answers "what served production at T" and cannot be quietly rewritten."""

import json
import os
import re

import pytest
from ml_metadata.proto import metadata_store_pb2

from foundation import metadata_store
from cli import main as cli
from release import ledger, policy
from serving import labels
from support.html_tables import read_tables
from support.release_users import ALICE, BOB, CAROL, MALLORY

pytestmark = pytest.mark.e2e


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def _history(workspace, capsys, *argv):
    capsys.readouterr()
    code = workspace.models('history', '--json', *argv)
    return code, _json(capsys)


def test_list_shows_each_version_from_its_lineage(workspace, capsys):
    v = workspace.versions
    assert workspace.models('list', '--json') == 0
    rows = {row['version']: row for row in _json(capsys)['versions']}
    assert set(rows) == {v.first, v.drifted, v.unregistered}
    first, drifted = rows[v.first], rows[v.drifted]
    assert first['stage'] == drifted['stage'] == 'candidate'
    assert first['blessed'] == drifted['blessed'] == 'yes'
    # The drifted span's model carries the drift check's verdict from its Trainer, found through the Pusher's inputs.
    assert drifted['drift'] == 'drift' and drifted['drift_features'] == ['trip_start_hour']
    assert first['drift'] != 'drift'
    for row in (first, drifted):
        assert 0.5 < row['eval_auc'] <= 1 and row['run'] and row['pushed'] != '-'
    assert rows[v.unregistered]['stage'] == 'unregistered' and rows[v.unregistered]['blessed'] == 'unknown'


def test_stable_needs_an_approval_by_a_listed_approver(workspace, capsys):
    v = workspace.versions
    # Nobody approved: refused, and nothing is written anywhere.
    assert workspace.models('promote', v.first, '--to', 'stable', '--reason', 'ship it', user=BOB) == 2
    assert 'has no approval' in capsys.readouterr().err
    assert not os.path.exists(workspace.serving_config)

    # Someone not on the approvers list cannot approve, and is told who can.
    assert workspace.models('approve', v.first, '--reason', 'lgtm', user=MALLORY) == 2
    err = capsys.readouterr().err
    assert "'mallory@example.com' may not approve" in err and "'approve' role" in err and ALICE in err
    assert _history(workspace, capsys)[1]['decisions'] == []

    # A promoter cannot approve; an approver cannot promote.
    assert workspace.models('approve', v.first, '--reason', 'lgtm', user=BOB) == 2
    assert workspace.models('approve', v.first, '--reason', 'AUC 0.95 on the eval split', user=ALICE) == 0
    assert workspace.models('promote', v.first, '--to', 'stable', '--reason', 'ship', user=ALICE) == 2
    assert "'promote' role" in capsys.readouterr().err
    assert workspace.models('promote', v.first, '--to', 'stable', '--reason', 'first release', user=BOB) == 0
    assert workspace.serving() == ({'stable': v.first}, 0.0)


def test_approval_is_refused_without_a_blessing_record_or_a_drift_review(workspace, capsys):
    v = workspace.versions
    assert workspace.models('approve', v.unregistered, '--reason', 'copied by hand', user=ALICE) == 2
    assert 'no record of the pipeline pushing it' in capsys.readouterr().err
    assert workspace.models('promote', v.unregistered, '--to', 'canary', '--reason', 'try', user=BOB) == 2

    assert workspace.models('approve', v.drifted, '--reason', 'lgtm', user=ALICE) == 2
    err = capsys.readouterr().err
    assert 'drifted' in err and 'trip_start_hour' in err and '--drift-reviewed' in err
    assert workspace.models('approve', v.drifted, '--reason', 'night trips are the new normal; reviewed',
                            '--drift-reviewed', user=ALICE) == 0
    (decision,) = _history(workspace, capsys)[1]['decisions']
    assert decision['evidence']['drift_reviewed'] is True and decision['evidence']['drift_verdict'] == 'drift'

    # Whoever approved may not also promote it to stable: separation of duties.
    assert workspace.models('approve', v.first, '--reason', 'ok', user=CAROL) == 0
    assert workspace.models('promote', v.first, '--to', 'stable', '--reason', 'ship', user=CAROL) == 2
    assert 'separation of duties' in capsys.readouterr().err


def test_history_is_complete_ordered_and_answers_what_served_when(workspace, capsys, tmp_path):
    v = workspace.versions
    workspace.release_both()
    assert workspace.models('approve', v.drifted, '--reason', 'drift reviewed', '--drift-reviewed', user=ALICE) == 0
    assert workspace.models('promote', v.drifted, '--to', 'stable', '--reason', 'canary held up', user=BOB) == 0
    # The previous stable stays loaded under `rollback`, so rolling back is one label move.
    assert workspace.serving() == ({'stable': v.drifted, 'rollback': v.first}, 0.0)
    assert workspace.models('rollback', '--reason', 'complaints about tips', user=BOB) == 0
    assert workspace.serving() == ({'stable': v.first}, 0.0)
    assert workspace.models('rollback', '--reason', 'again', user=BOB) == 2
    assert 'nothing to roll back to' in capsys.readouterr().err

    code, history = _history(workspace, capsys)
    assert code == 0 and history['history_verified']
    decisions = history['decisions']
    assert [(d['action'], d['version'], d['actor']) for d in decisions] == [
        ('approve', v.first, ALICE), ('promote', v.first, BOB), ('promote', v.drifted, BOB),
        ('approve', v.drifted, ALICE), ('promote', v.drifted, BOB), ('rollback', v.first, BOB)]
    # A decision that moves serving is two records: its intent, recorded before the files change, and the
    # confirmation once they did. Approvals change no file: one record.
    assert [d['sequence'] for d in decisions] == [1, 2, 4, 6, 7, 9]
    assert [d['confirmation']['outcome'] for d in decisions if d['phase'] == 'intent'] == ['applied'] * 4
    assert history['records'] == 10
    times = [d['at_micros'] for d in decisions]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert decisions[4]['changes'] == {str(v.first): ['stable', 'archived'], str(v.drifted): ['canary', 'stable']}
    assert decisions[4]['evidence']['approved_by'] == ALICE
    assert decisions[5]['changes'] == {str(v.first): ['archived', 'stable'], str(v.drifted): ['stable', 'archived']}
    assert all(d['reason'] and d['policy_sha256'] for d in decisions)

    def served_at(micros):
        _, answer = _history(workspace, capsys, '--at', _iso(micros))
        return answer['stable'], answer['canary']
    assert served_at(times[0] - 1_000_000) == (None, None)
    assert served_at(times[1]) == (v.first, None)
    assert served_at((times[2] + times[3]) // 2) == (v.first, v.drifted)
    assert served_at(times[4]) == (v.drifted, None)
    assert served_at(times[5] + 1) == (v.first, None)
    # A decision's own printed time answers its own state (whole seconds answered the state before it).
    _, answer = _history(workspace, capsys, '--at', decisions[4]['at'].removesuffix(' UTC'))
    assert (answer['stable'], answer['canary']) == (v.drifted, None)

    # The page: the decisions newest first, and a timeline with a span for each label each version held.
    page = tmp_path / 'registry.html'
    assert workspace.models('history', '--html', page) == 0
    text = page.read_text()
    tables = read_tables(text)
    assert [row[0] for row in tables['Decisions'][1:]] == ['9', '7', '6', '4', '2', '1']
    assert [row[9] for row in tables['Decisions'][1:]] == [
        'applied (#10)', 'applied (#8)', 'recorded', 'applied (#5)', 'applied (#3)', 'recorded']
    assert {row[0]: row[1] for row in tables['Versions'][1:]}[str(v.first)] == 'stable'
    spans = re.findall(r'<rect [^>]*><title>v(\d+): (\w+)</title>', text)
    assert {(int(version), label) for version, label in spans} == {
        (v.first, 'stable'), (v.first, 'rollback'), (v.drifted, 'canary'), (v.drifted, 'stable')}
    assert len(re.findall(r'<circle [^>]*><title>#\d+ ', text)) == len(decisions)

    # Each decision is linked, in ML Metadata, to the PushedModel of every version it moved.
    store = metadata_store.connect(workspace.metadata_path)
    pushed = metadata_store.pushed_model(store, v.base_path, v.drifted)
    options = metadata_store_pb2.LineageSubgraphQueryOptions(max_num_hops=1)
    options.starting_artifacts.filter_query = f'id = {pushed.id}'
    graph = store.get_lineage_subgraph(options)
    releases = sorted(e.properties['sequence'].int_value for e in graph.executions if e.type == ledger.EXECUTION_TYPE)
    assert releases == [4, 5, 6, 7, 8, 9, 10]  # intents and their confirmations


def _iso(micros):
    import datetime
    return datetime.datetime.fromtimestamp(micros / 1e6, datetime.timezone.utc).isoformat()


def test_a_rewritten_decision_is_found_and_stops_further_transitions(workspace, capsys):
    v = workspace.versions
    workspace.release_both()
    store = metadata_store.connect(workspace.metadata_path)
    (execution,) = [e for e in store.get_executions_by_type(ledger.EXECUTION_TYPE)
                    if e.properties['action'].string_value == 'approve']
    execution.properties['actor'].string_value = CAROL  # someone "corrects" who approved
    store.put_execution(execution, [], [])

    code, history = _history(workspace, capsys)
    assert code == 1 and not history['history_verified']
    assert workspace.models('history') == 1
    err = capsys.readouterr().err
    assert 'decision 1' in err and 'rewritten' in err and 'updated after it was written' in err
    assert workspace.models('rollback', '--canary', '--reason', 'stop', user=BOB) == 1
    assert 'does not verify' in capsys.readouterr().err
    assert workspace.serving() == ({'stable': v.first, 'canary': v.drifted}, 20.0)  # nothing moved


def test_rejecting_the_canary_takes_its_traffic_away_and_bars_it_from_stable(workspace, capsys):
    v = workspace.versions
    workspace.release_both()
    assert workspace.models('reject', v.first, '--reason', 'serves production', user=ALICE) == 2
    assert 'roll it back first' in capsys.readouterr().err
    assert workspace.models('reject', v.drifted, '--reason', 'slices with few rows look off', user=ALICE) == 0
    assert workspace.serving() == ({'stable': v.first}, 0.0)
    assert workspace.models('promote', v.drifted, '--to', 'canary', '--reason', 'retry', user=BOB) == 2
    assert 'was rejected by alice@example.com' in capsys.readouterr().err

    assert workspace.models('show', v.drifted, '--json') == 0
    shown = _json(capsys)
    assert shown['stage'] == 'archived' and shown['approval'].startswith('rejected by')
    assert [d['action'] for d in shown['decisions']] == ['promote', 'reject']
    assert [d['phase'] for d in shown['decisions']] == ['intent', 'intent']


def test_a_decision_that_cannot_be_recorded_leaves_serving_as_it_was(workspace, capsys, monkeypatch):
    v = workspace.versions
    workspace.release_both()
    before = workspace.serving()

    def fail(*args, **kwargs):
        raise RuntimeError('metadata store unavailable')
    with monkeypatch.context() as patched:
        patched.setattr(ledger, 'write', fail)
        assert workspace.models('rollback', '--canary', '--reason', 'stop', user=BOB) == 1
    assert workspace.serving() == before

    # A store that records the decision and then reports an error: the decision stands, and serving with it.
    write = ledger.write

    def write_then_fail(*args, **kwargs):
        write(*args, **kwargs)
        raise RuntimeError('connection reset after the commit')
    monkeypatch.setattr(ledger, 'write', write_then_fail)
    assert workspace.models('rollback', '--canary', '--reason', 'stop', user=BOB) == 0
    assert workspace.serving() == ({'stable': v.first}, 0.0)
    assert _history(workspace, capsys)[1]['decisions'][-1]['action'] == 'withdraw'


def test_two_writers_cannot_record_the_same_place_in_the_history(workspace):
    workspace.release_both()
    store = metadata_store.connect(workspace.metadata_path)
    decisions = ledger.read(store, workspace.versions.base_path)
    fields = dict(action='approve', model_version=workspace.versions.drifted, reason='race', labels={},
                  model_base_path=workspace.versions.base_path, changes={}, canary_percent=0.0, evidence={},
                  policy_sha256='', serving_config='')
    keys = workspace.identities.key
    ledger.write(store, ledger.signed(ledger.prepare(decisions, actor=ALICE, **fields), keys[ALICE]), [])
    with pytest.raises(Exception, match='(?i)exist'):
        ledger.write(store, ledger.signed(ledger.prepare(decisions, actor=CAROL, **fields), keys[CAROL]), [])
    assert ledger.problems(ledger.read(store, workspace.versions.base_path), policy.load()) == []


def test_a_config_changed_outside_the_registry_stops_transitions_until_synced(workspace, capsys):
    v = workspace.versions
    workspace.release_both()
    labels.set_labels(workspace.serving_config, v.drifted)  # by hand: the canary made stable, no record
    assert workspace.models('list') == 1
    assert 'but the history says canary=' in capsys.readouterr().err
    assert workspace.models('rollback', '--canary', '--reason', 'stop', user=BOB) == 1
    assert 'something changed serving outside the registry' in capsys.readouterr().err

    assert workspace.models('sync', '--reason', 'undo a hand edit', user=MALLORY) == 2
    # The hand edit unloaded the recorded stable version: it loads first, then the labels go back.
    assert workspace.models('sync', '--reason', 'undo a hand edit', user=BOB) == 0
    assert 'staged' in capsys.readouterr().out
    assert workspace.models('sync', '--reason', 'undo a hand edit', user=BOB) == 0
    assert workspace.serving() == ({'stable': v.first, 'canary': v.drifted}, 20.0)
    assert workspace.models('list') == 0


def test_a_canary_is_bounded_until_approved_and_never_a_former_stable(workspace, capsys):
    v = workspace.versions
    workspace.release_both()
    assert workspace.models('promote', v.drifted, '--to', 'canary', '--percent', 80, '--reason', 'ramp',
                            user=BOB) == 2
    assert 'has no approval, which give version' in capsys.readouterr().err
    assert workspace.models('approve', v.drifted, '--drift-reviewed', '--reason', 'ok', user=ALICE) == 0
    assert workspace.models('promote', v.drifted, '--to', 'canary', '--percent', 80, '--reason', 'ramp',
                            user=BOB) == 0
    assert workspace.serving()[1] == 80.0
    assert workspace.models('promote', v.drifted, '--to', 'stable', '--reason', 'go', user=BOB) == 0
    # The previous stable, kept for rollback, cannot come back as a canary: that is what rollback is for.
    assert workspace.models('promote', v.first, '--to', 'canary', '--reason', 'again', user=BOB) == 2
    assert 'roll back' in capsys.readouterr().err


def test_an_evaluation_acts_only_on_the_canary_it_judged(workspace):
    from release import policy, transitions
    v = workspace.versions
    workspace.release_both()
    store = metadata_store.connect(workspace.metadata_path)
    target = transitions.ServingTarget(workspace.serving_config, workspace.traffic_config, 'chicago-taxi')
    release = transitions.Release(store, v.base_path, target, policy.load(), BOB, workspace.metadata_path)
    with pytest.raises(policy.NotAllowed, match='no longer the canary'):
        release.rollback('stale verdict', canary_only=True, expect_canary=v.first)
    assert workspace.serving()[0]['canary'] == v.drifted


def test_what_was_approved_is_what_reaches_stable(workspace, capsys):
    v = workspace.versions
    workspace.release_both()
    assert workspace.models('approve', v.drifted, '--drift-reviewed', '--reason', 'reviewed', user=ALICE) == 0
    planted = os.path.join(v.base_path, str(v.drifted), 'assets.extra', 'planted.txt')
    try:
        with open(planted, 'w') as f:  # the directory changes after the approval
            f.write('not what was approved')
        assert workspace.models('promote', v.drifted, '--to', 'stable', '--reason', 'go', user=BOB) == 2
        assert 'changed since alice@example.com approved them' in capsys.readouterr().err
    finally:
        os.remove(planted)
    assert workspace.models('promote', v.drifted, '--to', 'stable', '--reason', 'go', user=BOB) == 0


def test_an_approval_between_the_two_steps_of_a_staged_promotion_keeps_the_version_loading(workspace):
    v = workspace.versions
    assert workspace.models('approve', v.first, '--reason', 'ok', user=ALICE) == 0
    assert workspace.models('promote', v.first, '--to', 'stable', '--reason', 'first', user=BOB) == 0
    promote = ('promote', v.drifted, '--to', 'canary', '--reason', 'new span')
    assert workspace.models(*promote, user=BOB) == 0  # staged: the config loads it, labels wait
    assert v.drifted in labels.loaded_versions(workspace.serving_config)
    assert workspace.models('approve', v.drifted, '--drift-reviewed', '--reason', 'reviewed', user=ALICE) == 0
    assert v.drifted in labels.loaded_versions(workspace.serving_config)
    assert workspace.models(*promote, user=BOB) == 0
    assert workspace.serving() == ({'stable': v.first, 'canary': v.drifted}, 10.0)


def test_a_rolled_back_version_says_so_in_its_lineage(workspace, capsys):
    v = workspace.versions
    workspace.release_both()
    assert workspace.models('approve', v.drifted, '--reason', 'drift reviewed', '--drift-reviewed', user=ALICE) == 0
    assert workspace.models('promote', v.drifted, '--to', 'stable', '--reason', 'canary held up', user=BOB) == 0
    assert workspace.models('rollback', '--reason', 'complaints about tips', user=BOB) == 0
    capsys.readouterr()
    lineage_args = ['--metadata-path', workspace.metadata_path, '--model-base-path', v.base_path]
    assert cli.main(['lineage', str(v.drifted), '--json', *lineage_args]) == 0
    rolled_back = json.loads(capsys.readouterr().out)
    assert rolled_back['stage'] == 'archived'
    last = rolled_back['stage_history'][-1]
    assert (last['action'], last['stage_before'], last['stage_after'], last['actor'], last['reason']) == (
        'rollback', 'stable', 'archived', BOB, 'complaints about tips')
    assert [a['action'] for a in rolled_back['approvals']] == ['approve']
    assert rolled_back['approvals'][0]['actor'] == ALICE
    # The version it went back to: stable again, the rollback in its history too.
    assert cli.main(['lineage', str(v.first), *lineage_args]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f'Version {v.first}: stable')
    assert 'rollback' in text and 'complaints about tips' in text
