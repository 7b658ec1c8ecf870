"""Release records carry their format: a field added later leaves every earlier record verifying.

These tests write records to a fresh SQLite ML Metadata store of their own, no pipeline run needed.
"""

import dataclasses
import subprocess

import pytest
from ml_metadata.proto import metadata_store_pb2

from foundation import metadata_store
from release import ledger, policy as policy_lib
from support.release_users import ALICE, MALLORY

pytestmark = pytest.mark.unit


BASE = '/models/chicago-taxi'
KEY = {}  # name -> private key file, set by the `keys` fixture


@pytest.fixture(autouse=True)
def keys(release_identities):
    KEY.update(release_identities.key)
    return release_identities


def _policy(keys, unsigned_history=0):
    return policy_lib.Policy('approvers.yaml', '', {'approve': frozenset({ALICE})},
                             {ALICE: frozenset({keys.public(ALICE)})}, unsigned_history)


def _decision(previous, signer=ALICE, **changed):
    fields = dict(action=ledger.APPROVE, model_version=7, actor=ALICE, reason='eval AUC fine', model_base_path=BASE,
                  changes={7: ('candidate', 'approved')}, labels={}, canary_percent=0.0, evidence={},
                  policy_sha256='p' * 64, serving_config='/tmp/models.config')
    return ledger.signed(ledger.prepare(previous, **{**fields, **changed}), KEY[signer])


def _resigned(decision, signer=ALICE):
    decision = dataclasses.replace(decision, digest=ledger.digest_of(decision.fields()))
    return ledger.signed(decision, KEY[signer]) if decision.format_version >= 3 else \
        dataclasses.replace(decision, signature='')


@pytest.fixture
def store(tmp_path):
    return metadata_store.connect(str(tmp_path / 'metadata.sqlite'))


def _append(store, decision=None):
    previous = ledger.read(store, BASE)
    return ledger.write(store, decision or _decision(previous), [])


def test_a_record_names_its_format_and_verifies(store, keys):
    _append(store)
    _append(store, _decision(ledger.read(store, BASE), action=ledger.PROMOTE, changes={7: ('approved', 'stable')}))
    found = ledger.read(store, BASE)
    assert [d.format_version for d in found] == [ledger.CURRENT_FORMAT] * 2
    assert ledger.problems(found, _policy(keys)) == []


def _new_format(monkeypatch):
    """A later release of the code records a change ticket with every decision: a new property, a new format."""
    monkeypatch.setitem(ledger._PROPERTIES, 'change_ticket', metadata_store_pb2.STRING)
    monkeypatch.setitem(ledger.FORMATS, 4, ledger.FORMATS[3] + ('change_ticket',))


def test_a_field_added_by_a_new_format_leaves_the_old_history_verifying(store, monkeypatch, keys):
    _append(store)
    _append(store, _decision(ledger.read(store, BASE), action=ledger.PROMOTE, changes={7: ('approved', 'stable')}))
    _new_format(monkeypatch)
    monkeypatch.setattr(ledger, 'CURRENT_FORMAT', 4)
    newer = _decision(ledger.read(store, BASE), action=ledger.ROLLBACK, changes={7: ('stable', 'archived')})
    _append(store, _resigned(dataclasses.replace(newer, format_version=4, extra={'change_ticket': 'CHG-42'})))

    found = ledger.read(store, BASE)
    assert [d.format_version for d in found] == [3, 3, 4]
    assert found[-1].extra == {'change_ticket': 'CHG-42'}
    assert ledger.problems(found, _policy(keys)) == []


def test_a_rewritten_field_still_breaks_the_chain_whatever_the_format(store, monkeypatch, keys):
    _append(store)
    _new_format(monkeypatch)
    newer = _decision(ledger.read(store, BASE), action=ledger.PROMOTE, changes={7: ('approved', 'stable')})
    _append(store, _resigned(dataclasses.replace(newer, format_version=4, extra={'change_ticket': 'CHG-42'})))
    found = ledger.read(store, BASE)
    # The new field is covered by the digest: changing it is a rewrite.
    forged = dataclasses.replace(found[-1], extra={'change_ticket': 'CHG-1'})
    assert any('rewritten' in p for p in ledger.problems([found[0], forged], _policy(keys)))
    # So is the version itself: claiming the older format to drop the new field from the digest fails.
    downgraded = dataclasses.replace(found[-1], format_version=3, extra={})
    assert any('rewritten' in p for p in ledger.problems([found[0], downgraded], _policy(keys)))


def test_records_from_before_format_versions_read_as_format_1_and_verify_within_the_unsigned_history(store, keys):
    old = _resigned(dataclasses.replace(_decision([]), format_version=1))
    _append(store, old)
    (execution,) = store.get_executions_by_type(ledger.EXECUTION_TYPE)
    assert 'format_version' not in execution.properties  # as such a record was written
    assert 'signature' not in execution.properties
    _append(store)
    found = ledger.read(store, BASE)
    assert [d.format_version for d in found] == [1, 3]
    assert ledger.problems(found, _policy(keys, unsigned_history=1)) == []
    # Without the auditor's say-so in the approvers file, an unsigned decision does not verify.
    assert any('not signed' in p for p in ledger.problems(found, _policy(keys)))


def test_a_record_in_a_format_this_code_does_not_know_stops_releases(store, monkeypatch, keys):
    monkeypatch.setitem(ledger.FORMATS, 9, ledger.FORMATS[3])
    _append(store, _resigned(dataclasses.replace(_decision([]), format_version=9)))
    monkeypatch.delitem(ledger.FORMATS, 9)
    with pytest.raises(ledger.BrokenLedger, match='format 9'):
        ledger.verify(ledger.read(store, BASE), _policy(keys))


def test_a_chain_rebuilt_with_write_access_cannot_speak_for_anyone_else(store, keys):
    """The finding: ~20 lines of SQL rebuilt the chain and turned carol's approval into alice's. Now every
    digest is signed: whoever rebuilds the chain signs with their own key, which is not alice's."""
    _append(store, _decision([], actor=ALICE))
    honest = ledger.read(store, BASE)
    assert ledger.problems(honest, _policy(keys)) == []
    forged = _resigned(dataclasses.replace(honest[0], reason='approved, says alice'), signer=MALLORY)
    found = ledger.problems([forged], _policy(keys))
    assert len(found) == 1 and 'not their decision' in found[0]
    # Replaying alice's own signature over the rewritten digest does not verify either.
    replayed = dataclasses.replace(forged, signature=honest[0].signature)
    assert any('does not verify' in p for p in ledger.problems([replayed], _policy(keys)))


def test_an_auditor_verifies_a_decision_with_openssh_alone(store, keys, tmp_path):
    decision = _append(store)
    allowed = tmp_path / 'allowed_signers'
    allowed.write_text(_policy(keys).allowed_signers())
    (tmp_path / 'decision.sig').write_text(decision.signature + '\n')

    def openssh_verify(identity, message):
        return subprocess.run(['ssh-keygen', '-Y', 'verify', '-f', str(allowed), '-I', identity, '-n',
                               'taxi-pipeline-release', '-s', str(tmp_path / 'decision.sig')],
                              input=message, capture_output=True).returncode
    assert openssh_verify(ALICE, decision.digest.encode()) == 0
    digest = decision.digest.encode()
    # One character changed (whatever the last one was: appending '0' to a digest ending in '0' changed nothing).
    assert openssh_verify(ALICE, digest[:-1] + (b'1' if digest.endswith(b'0') else b'0')) != 0
    assert openssh_verify(MALLORY, decision.digest.encode()) != 0


@pytest.mark.parametrize('micros', [1_796_554_063_000_001, 1_796_554_063_999_999, 1_796_554_063_345_678,
                                    1_796_554_064_000_000, 1_700_000_000_123_457])
def test_a_printed_decision_time_reads_back_as_the_time_recorded(micros):
    # `history --at` the time a decision prints must answer that decision's own state: whole seconds
    # fell before it, and a float on the way rounds some microseconds down.
    printed = ledger.format_time(micros)
    assert ledger.parse_time(printed) == micros
    assert ledger.parse_time(printed + '+00:00') == micros
    assert ledger.parse_time(printed.replace(' ', 'T')) == micros


def test_a_second_local_command_waits_a_stated_time_for_the_history_then_names_who_holds_it(tmp_path):
    metadata_path = str(tmp_path / 'metadata.sqlite')
    with ledger.append_lock(metadata_path):
        with pytest.raises(ledger.Busy, match=r'held by `taxi-pipeline .*` \(pid \d+ on .*for over 0 s; nothing was'):
            with ledger.append_lock(metadata_path, wait_seconds=0.3):
                pass
    with ledger.append_lock(metadata_path, wait_seconds=0.3):  # released however the holder ended
        pass
