"""The baseline (and drift reference) lookup: the newest version that is complete on disk and, given
the registry, one ML Metadata records as pushed (issue 24: a truncated and an unrecorded version were
both taken)."""

import logging
import os

import pytest

from components.baseline_model import latest_pushed_version
from foundation import metadata_store
from support.pushes import record_push, saved_model_pb, write_model

pytestmark = pytest.mark.unit


def test_a_version_with_a_cut_short_saved_model_is_never_the_baseline(tmp_path, caplog):
    base = str(tmp_path / 'serving')
    write_model(os.path.join(base, '1796540000'))
    write_model(os.path.join(base, '1796551205'), saved_model=saved_model_pb(1_343_489)[:262_144])
    write_model(os.path.join(base, '1796551300'), with_saved_model=False)
    with caplog.at_level(logging.WARNING):
        assert latest_pushed_version(base) == '1796540000'
    skipped = [r.getMessage() for r in caplog.records if 'skipping' in r.getMessage()]
    assert len(skipped) == 2 and '1796551205' in skipped[1] and 'no complete saved_model.pb' in skipped[1]


def test_given_the_store_only_versions_it_records_as_pushed_are_taken(tmp_path, caplog):
    base = str(tmp_path / 'serving')
    store = metadata_store.connect(str(tmp_path / 'metadata.sqlite'))
    for version in ('1796530000', '1796540000', '1796545000', '1796551205'):
        write_model(os.path.join(base, version))
    record_push(store, base, '1796530000')
    record_push(store, str(tmp_path / 'elsewhere'), '1796540000')  # copied here with its ML Metadata
    record_push(store, base, '1796545000', pushed=0)                # recorded, but not pushed
    # 1796551205: complete, and no PushedModel at all (its run was killed after the copy)
    with caplog.at_level(logging.WARNING):
        assert latest_pushed_version(base, store) == '1796540000'
    skipped = [r.getMessage() for r in caplog.records if 'skipping' in r.getMessage()]
    assert [m.split('skipping ')[1][:10] for m in skipped] == ['1796551205', '1796545000']
    assert all('ML Metadata has no PushedModel' in m for m in skipped)
    # Without a store (Vertex AI) the push destination alone decides.
    assert latest_pushed_version(base) == '1796551205'
    record_push(store, base, '1796551205', kubeflow=True)  # as open-source Kubeflow records it
    assert latest_pushed_version(base, store) == '1796551205'


def test_given_the_store_nothing_it_knows_means_no_baseline(tmp_path):
    base = str(tmp_path / 'serving')
    write_model(os.path.join(base, '1796551205'))
    assert latest_pushed_version(base, metadata_store.connect(str(tmp_path / 'metadata.sqlite'))) is None
    assert latest_pushed_version(str(tmp_path / 'nothing'), metadata_store.connect(str(tmp_path / 'm2.sqlite'))) is None
