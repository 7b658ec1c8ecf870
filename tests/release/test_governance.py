"""Governance that holds (issue 24): every rule on every path, record before apply, proven identities, a
history the serving files are checked against, and one writer at a time on a cluster's store too.

Each test reproduces what an auditor did as a careless or dishonest operator, on a registry of its own
over the versions of real pipeline runs (tests/release/conftest.py)."""

import json
import multiprocessing
import os
import threading

import pytest

from cli import main as cli
from foundation import metadata_store
from release import ledger, policy, registry, transitions
from serving import traffic
from support.kubeflow.metadata_service import MetadataService
from support.release_users import ALICE, BOB, CAROL

pytestmark = pytest.mark.e2e


def _err(capsys):
    return capsys.readouterr().err


def _history(workspace, capsys, *argv):
    capsys.readouterr()
    code = workspace.models('history', '--json', *argv)
    return code, json.loads(capsys.readouterr().out)


# -- every rule on every path -----------------------------------------------------------------------

def test_the_approver_cannot_give_her_version_production_traffic_as_a_canary(workspace, capsys):
    v = workspace.versions
    workspace.release_both()
    assert workspace.models('approve', v.drifted, '--drift-reviewed', '--reason', 'reviewed', user=CAROL) == 0
    # Carol approved it, so she may not promote it to stable (separation of duties) ...
    assert workspace.models('promote', v.drifted, '--to', 'stable', '--reason', 'go', user=CAROL) == 2
    # ... and a 100% canary is stable in all but name: the same rule.
    assert workspace.models('promote', v.drifted, '--to', 'canary', '--percent', 100, '--reason', 'go',
                            user=CAROL) == 2
    assert 'separation of duties' in _err(capsys)
    assert workspace.serving()[1] == 20.0
    # Up to the cap a canary needs no approval, and her promote role lets her move it there.
    assert workspace.models('promote', v.drifted, '--to', 'canary', '--percent', 50, '--reason', 'ramp',
                            user=CAROL) == 0
    assert workspace.serving()[1] == 50.0


def test_a_version_changed_after_approval_gets_no_more_than_the_canary_cap(workspace, capsys):
    v = workspace.versions
    workspace.release_both()
    assert workspace.models('approve', v.drifted, '--drift-reviewed', '--reason', 'reviewed', user=ALICE) == 0
    planted = os.path.join(v.base_path, str(v.drifted), 'assets.extra', 'planted.txt')
    try:
        with open(planted, 'w') as f:
            f.write('not what was approved')
        assert workspace.models('promote', v.drifted, '--to', 'canary', '--percent', 100, '--reason', 'go',
                                user=BOB) == 2
        assert f'the files of version {v.drifted} changed since' in _err(capsys)
    finally:
        os.remove(planted)
    assert workspace.serving()[1] == 20.0


def _to_stable_and_back_up(workspace):
    """first stable, then drifted stable: first is the rollback target."""
    v = workspace.versions
    workspace.release_both()
    assert workspace.models('approve', v.drifted, '--drift-reviewed', '--reason', 'reviewed', user=ALICE) == 0
    assert workspace.models('promote', v.drifted, '--to', 'stable', '--reason', 'go', user=BOB) == 0


def test_a_rollback_target_must_be_there_and_be_what_was_promoted(workspace, capsys):
    v = workspace.versions
    _to_stable_and_back_up(workspace)
    directory = os.path.join(v.base_path, str(v.first))
    planted = os.path.join(directory, 'assets.extra', 'planted.txt')
    os.makedirs(os.path.dirname(planted), exist_ok=True)
    try:
        with open(planted, 'w') as f:
            f.write('changed after it served')
        assert workspace.models('rollback', '--reason', 'complaints', user=BOB) == 2
        assert 'its files changed since it was promoted' in _err(capsys)
    finally:
        os.remove(planted)
    moved = directory + '.moved'
    os.rename(directory, moved)
    try:
        assert workspace.models('rollback', '--reason', 'complaints', user=BOB) == 2
        assert 'has no saved_model.pb' in _err(capsys)
    finally:
        os.rename(moved, directory)
    assert workspace.serving()[0]['stable'] == v.drifted
    assert workspace.models('rollback', '--reason', 'complaints', user=BOB) == 0
    assert workspace.serving()[0]['stable'] == v.first


# -- proven identities ------------------------------------------------------------------------------

def test_a_name_is_a_claim_and_the_key_is_the_proof(workspace, capsys):
    v = workspace.versions
    keys = workspace.identities.key
    # One person holding Bob's key cannot approve as Alice ...
    argv = ['models', 'approve', v.first, '--reason', 'ok', *workspace.args()]
    assert cli.main([*map(str, argv), '--user', ALICE, '--signing-key', keys[BOB]]) == 2
    assert f'is not one {workspace.identities.policy_file} lists for {ALICE}' in _err(capsys)
    # ... nor act without a key at all.
    os.environ.pop('TAXI_PIPELINE_SIGNING_KEY')
    assert cli.main([*map(str, argv), '--user', ALICE]) == 2
    assert 'every release decision is signed' in _err(capsys)
    code, history = _history(workspace, capsys)
    assert code == 0 and history['decisions'] == []
    assert workspace.models('approve', v.first, '--reason', 'ok', user=ALICE) == 0
    _, history = _history(workspace, capsys)
    assert [(d['actor'], d['signed']) for d in history['decisions']] == [(ALICE, True)]
    assert '@' in history['decisions'][0]['ran_as']  # the login account stays recorded beside the identity


# -- record, apply, confirm -------------------------------------------------------------------------

def _killed_while_applying(workspace, *argv, user):
    """Runs the command in a forked child that dies (os._exit, no cleanup: as SIGKILL) once the serving files
    are written, while it waits for a server to confirm."""
    def child():
        transitions.Release._wait = lambda *args, **kwargs: os._exit(137)
        cli.main([*map(str, argv), *workspace.args(user), '--server', 'http://127.0.0.1:9'])
        os._exit(0)
    process = multiprocessing.get_context('fork').Process(target=child)
    process.start()
    process.join(120)
    assert process.exitcode == 137


def test_a_command_killed_between_applying_and_confirming_is_named_and_repaired_on_the_record(
        workspace, capsys, monkeypatch):
    v = workspace.versions
    _to_stable_and_back_up(workspace)
    _killed_while_applying(workspace, 'models', 'rollback', '--reason', 'complaints', user=BOB)
    # The files moved (the intent was recorded first, so something says so) ...
    assert workspace.serving()[0]['stable'] == v.first
    assert workspace.models('list') == 1
    err = _err(capsys)
    assert 'was recorded but not confirmed' in err and 'rollback' in err
    # ... and what served in that window is answered with the doubt it has.
    code, history = _history(workspace, capsys)
    intent = history['decisions'][-1]
    assert (intent['action'], intent['phase'], intent['confirmation']) == ('rollback', 'intent', None)
    code, answer = _history(workspace, capsys, '--at', intent['at'].removesuffix(' UTC'))
    assert answer['taking_effect'] == [intent['sequence']]
    # While its lease runs, nobody else decides (a cluster's other writer gets the same answer) ...
    assert workspace.models('promote', v.drifted, '--to', 'canary', '--reason', 'x', user=BOB) == 4
    assert 'is taking effect' in _err(capsys)
    assert workspace.models('sync', '--reason', 'the command died', user=BOB) == 4
    # ... after it, the repair completes the decision and is itself recorded.
    later = ledger.now_micros() + 3600 * 10**6
    monkeypatch.setattr(ledger, 'now_micros', lambda: later)
    assert workspace.models('promote', v.drifted, '--to', 'canary', '--reason', 'x', user=BOB) == 1
    assert 'never confirmed' in _err(capsys)
    assert workspace.models('sync', '--reason', 'the rollback command died on the bastion', user=BOB) == 0
    _, history = _history(workspace, capsys)
    confirmation = history['decisions'][-1]['confirmation']
    assert confirmation['outcome'] == 'applied' and confirmation['actor'] == BOB
    assert 'the rollback command died on the bastion' in confirmation['reason']
    assert workspace.models('list') == 0


def test_a_hand_edited_traffic_share_is_found_by_every_view_and_repaired_on_the_record(workspace, capsys):
    v = workspace.versions
    workspace.release_both()
    traffic.write_split(workspace.traffic_config, 'chicago-taxi', 100.0)  # an unapproved canary takes everything
    for verb in ('list', 'history'):
        assert workspace.models(verb) == 1
        assert 'gives the canary 100% of the traffic, but the history says 20%' in _err(capsys)
    assert workspace.canary('status') == 1
    assert 'gives the canary 100%' in _err(capsys)
    assert workspace.models('promote', v.drifted, '--to', 'canary', '--percent', 30, '--reason', 'x',
                            user=BOB) == 1
    assert workspace.models('sync', '--reason', 'undo the hand edit', user=BOB) == 0
    assert workspace.serving() == ({'stable': v.first, 'canary': v.drifted}, 20.0)
    _, history = _history(workspace, capsys)
    repair = history['decisions'][-1]
    assert repair['action'] == 'repair' and repair['confirmation']['outcome'] == 'applied'
    assert '100%' in repair['evidence']['found']
    assert workspace.models('list') == 0


def test_a_failed_apply_is_recorded_as_never_having_served(workspace, capsys, monkeypatch):
    v = workspace.versions
    workspace.release_both()

    def server_down(*args, **kwargs):
        raise RuntimeError('http://127.0.0.1:8501 did not report stable -> 1 within 300 s')
    monkeypatch.setattr(transitions.Release, '_wait', server_down)
    assert workspace.models('rollback', '--canary', '--reason', 'stop', '--server', 'http://127.0.0.1:8501',
                            user=BOB) == 1
    assert workspace.serving() == ({'stable': v.first, 'canary': v.drifted}, 20.0)
    _, history = _history(workspace, capsys)
    assert history['decisions'][-1]['confirmation']['outcome'] == 'failed'
    _, answer = _history(workspace, capsys, '--at', history['decisions'][-1]['confirmation']['at'][:-4])
    assert answer['canary'] == v.drifted  # the withdrawal never took effect
    assert workspace.models('list') == 0


# -- one writer at a time, on a cluster's store -----------------------------------------------------

def test_two_writers_over_a_clusters_store_one_records_and_the_other_changes_nothing(workspace, tmp_path, monkeypatch):
    """The finding: with --metadata-grpc there was no lock, and the losing command restored its saved files over
    the winner's effect. The intent's place in the history is the compare-and-set, before any file changes."""
    v = workspace.versions
    workspace.release_both()
    both_read = threading.Barrier(2, timeout=30)
    read = registry.Registry.decisions

    def read_together(self):
        found = read(self)
        both_read.wait()  # both commands decide on the same history
        return found
    results = {}
    with MetadataService(workspace.metadata_path) as service:
        def act(name, percent):
            store = metadata_store.connect(grpc_address=service.address)
            target = transitions.ServingTarget(workspace.serving_config, workspace.traffic_config, 'chicago-taxi')
            release = transitions.Release(store, v.base_path, target, policy.load(), BOB, None, lambda line: None,
                                          workspace.identities.key[BOB])
            try:
                results[name] = release.promote(v.drifted, 'canary', f'ramp to {percent}', percent=percent)
            except Exception as e:
                results[name] = e
        monkeypatch.setattr(registry.Registry, 'decisions', read_together)
        threads = [threading.Thread(target=act, args=(name, percent)) for name, percent in (('a', 30), ('b', 40))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    monkeypatch.setattr(registry.Registry, 'decisions', read)
    outcomes = sorted(type(r).__name__ for r in results.values())
    assert outcomes == ['Conflict', 'Decision'], results
    winner = next(r for r in results.values() if isinstance(r, ledger.Decision))
    assert 'recorded decision' in str(next(r for r in results.values() if isinstance(r, Exception)))
    assert workspace.serving()[1] == winner.canary_percent
    assert workspace.models('list') == 0


def test_a_served_version_deleted_or_changed_is_named_by_the_registry(workspace, capsys):
    v = workspace.versions
    _to_stable_and_back_up(workspace)  # drifted stable, first kept loaded under `rollback`
    planted = os.path.join(v.base_path, str(v.drifted), 'assets.extra', 'planted.txt')
    try:
        with open(planted, 'w') as f:
            f.write('changed while serving')
        assert workspace.models('list') == 1
        assert f'the files of version {v.drifted} (stable) changed' in _err(capsys)
    finally:
        os.remove(planted)
    directory = os.path.join(v.base_path, str(v.first))
    os.rename(directory, directory + '.moved')
    try:
        assert workspace.models('history') == 1
        assert f'version {v.first} (rollback) has no saved_model.pb' in _err(capsys)
    finally:
        os.rename(directory + '.moved', directory)
    assert workspace.models('list') == 0


# -- pushes killed part way -------------------------------------------------------------------------

def test_models_list_names_and_quarantines_what_killed_pushes_left(workspace, capsys, monkeypatch):
    """The finding: a truncated version and a complete orphan showed as `unregistered unknown`, exit 0, forever."""
    from components.pusher import push_destination
    v = workspace.versions
    source = os.path.join(v.base_path, str(v.first))
    orphan, truncated = os.path.join(v.base_path, '1700000000'), os.path.join(v.base_path, '1700000001')
    import shutil
    shutil.copytree(source, orphan)  # a push killed after its copy, before ML Metadata recorded it
    shutil.copytree(source, truncated)  # a push killed during the copy (by a Pusher that copied in place)
    with open(os.path.join(truncated, 'saved_model.pb'), 'r+b') as f:
        f.truncate(4096)
    for root, dirs, files in os.walk(orphan):
        for name in dirs + files + ['']:
            os.utime(os.path.join(root, name), (1_700_000_000, 1_700_000_000))
    # Older than any version of this session, so only the two planted ones are past the grace period.
    monkeypatch.setattr(push_destination, 'GRACE_SECONDS', 30 * 86400)
    assert workspace.models('list') == 0
    err = _err(capsys)
    assert 'quarantined unregistered' in err and 'quarantined incomplete' in err
    assert not os.path.exists(orphan) and not os.path.exists(truncated)
    notes = push_destination.quarantined(v.base_path)
    assert {n['name'] for n in notes} >= {'1700000000', '1700000001'}
    assert os.path.isdir(os.path.join(v.base_path, str(v.unregistered)))  # younger: left for now
