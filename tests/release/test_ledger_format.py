"""Release records carry their format: a field added later leaves every earlier record verifying.

These tests write records to a fresh SQLite ML Metadata store of their own, no pipeline run needed.
"""

import dataclasses

import pytest
from ml_metadata.proto import metadata_store_pb2

from foundation import metadata_store
from release import ledger

pytestmark = pytest.mark.unit


BASE = '/models/chicago-taxi'


def _decision(previous, **changed):
    fields = dict(action=ledger.APPROVE, model_version=7, actor='alice', reason='eval AUC fine', model_base_path=BASE,
                  changes={7: ('candidate', 'approved')}, labels={}, canary_percent=0.0, evidence={},
                  policy_sha256='p' * 64, serving_config='/tmp/models.config')
    return ledger.prepare(previous, **{**fields, **changed})


@pytest.fixture
def store(tmp_path):
    return metadata_store.connect(str(tmp_path / 'metadata.sqlite'))


def _append(store, decision=None):
    previous = ledger.read(store, BASE)
    return ledger.write(store, decision or _decision(previous), [])


def test_a_record_names_its_format_and_verifies(store):
    _append(store)
    _append(store, _decision(ledger.read(store, BASE), action=ledger.PROMOTE, changes={7: ('approved', 'stable')}))
    found = ledger.read(store, BASE)
    assert [d.format_version for d in found] == [ledger.CURRENT_FORMAT] * 2
    assert ledger.problems(found) == []


def test_a_field_added_by_a_new_format_leaves_the_old_history_verifying(store, monkeypatch):
    _append(store)
    _append(store, _decision(ledger.read(store, BASE), action=ledger.PROMOTE, changes={7: ('approved', 'stable')}))
    # A later release of the code records a change ticket with every decision: a new property, a new format.
    monkeypatch.setitem(ledger._PROPERTIES, 'change_ticket', metadata_store_pb2.STRING)
    monkeypatch.setitem(ledger.FORMATS, 3, ledger.FORMATS[2] + ('change_ticket',))
    monkeypatch.setattr(ledger, 'CURRENT_FORMAT', 3)
    newer = _decision(ledger.read(store, BASE), action=ledger.ROLLBACK, changes={7: ('stable', 'archived')})
    newer = dataclasses.replace(newer, format_version=3, extra={'change_ticket': 'CHG-42'})
    _append(store, dataclasses.replace(newer, digest=ledger.digest_of(newer.fields())))

    found = ledger.read(store, BASE)
    assert [d.format_version for d in found] == [2, 2, 3]
    assert found[-1].extra == {'change_ticket': 'CHG-42'}
    assert ledger.problems(found) == []


def test_a_rewritten_field_still_breaks_the_chain_whatever_the_format(store, monkeypatch):
    _append(store)
    monkeypatch.setitem(ledger._PROPERTIES, 'change_ticket', metadata_store_pb2.STRING)
    monkeypatch.setitem(ledger.FORMATS, 3, ledger.FORMATS[2] + ('change_ticket',))
    newer = _decision(ledger.read(store, BASE), action=ledger.PROMOTE, changes={7: ('approved', 'stable')})
    newer = dataclasses.replace(newer, format_version=3, extra={'change_ticket': 'CHG-42'})
    _append(store, dataclasses.replace(newer, digest=ledger.digest_of(newer.fields())))
    found = ledger.read(store, BASE)
    # The new field is covered by the digest: changing it is a rewrite.
    forged = dataclasses.replace(found[-1], extra={'change_ticket': 'CHG-1'})
    assert any('rewritten' in p for p in ledger.problems([found[0], forged]))
    # So is the version itself: claiming the older format to drop the new field from the digest fails.
    downgraded = dataclasses.replace(found[-1], format_version=2, extra={})
    assert any('rewritten' in p for p in ledger.problems([found[0], downgraded]))


def test_records_from_before_format_versions_read_as_format_1_and_verify(store):
    old = dataclasses.replace(_decision([]), format_version=1)
    old = dataclasses.replace(old, digest=ledger.digest_of(old.fields()))
    _append(store, old)
    (execution,) = store.get_executions_by_type(ledger.EXECUTION_TYPE)
    assert 'format_version' not in execution.properties  # as such a record was written
    _append(store)
    found = ledger.read(store, BASE)
    assert [d.format_version for d in found] == [1, 2]
    assert ledger.problems(found) == []


def test_a_record_in_a_format_this_code_does_not_know_stops_releases(store, monkeypatch):
    monkeypatch.setitem(ledger.FORMATS, 9, ledger.FORMATS[2])
    future = dataclasses.replace(_decision([]), format_version=9)
    _append(store, dataclasses.replace(future, digest=ledger.digest_of(future.fields())))
    monkeypatch.delitem(ledger.FORMATS, 9)
    with pytest.raises(ledger.BrokenLedger, match='format 9'):
        ledger.verify(ledger.read(store, BASE))


@pytest.mark.parametrize('micros', [1_796_554_063_000_001, 1_796_554_063_999_999, 1_796_554_063_345_678,
                                    1_796_554_064_000_000, 1_700_000_000_123_457])
def test_a_printed_decision_time_reads_back_as_the_time_recorded(micros):
    # `history --at` the time a decision prints must answer that decision's own state: whole seconds
    # fell before it, and a float on the way rounds some microseconds down.
    printed = ledger.format_time(micros)
    assert ledger.parse_time(printed) == micros
    assert ledger.parse_time(printed + '+00:00') == micros
    assert ledger.parse_time(printed.replace(' ', 'T')) == micros
