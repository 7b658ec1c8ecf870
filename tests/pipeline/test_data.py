import os

import pytest

from pipeline import data

from support.samples import write_csv

pytestmark = pytest.mark.unit


def test_prepare_sample_writes_the_requested_rows_atomically(tmp_path, taxi_rows):
    path = data.prepare_sample(str(tmp_path), rows=100, span=3)
    header, rows = data.read_rows(path)
    assert header == taxi_rows[0] and rows == taxi_rows[1][:100]
    assert path == str(tmp_path / 'span-3' / 'data.csv')
    assert os.listdir(tmp_path / 'span-3') == ['data.csv']  # no temp file left behind


def test_latest_span_is_checked(tmp_path, taxi_rows):
    header, rows = taxi_rows
    write_csv(str(tmp_path / 'span-2' / 'a.csv'), header, rows[:5])
    write_csv(str(tmp_path / 'span-10' / 'a.csv'), header, rows[:5])
    assert data.check_data_root(str(tmp_path)).endswith('span-10')


@pytest.mark.parametrize('content, message', [
    ('', 'is empty'),
    ('fare,tips\n', 'no data rows'),
    ('1,2,3\n4,5,6\n', 'not a header'),
    ('fare,tips\n1.0,2.0\n3.0\n', ':3: 1 fields, but the header has 2'),
])
def test_unusable_csv_files_are_rejected_with_the_reason(tmp_path, content, message):
    (tmp_path / 'span-1').mkdir()
    (tmp_path / 'span-1' / 'data.csv').write_text(content)
    with pytest.raises(data.DataError, match=message):
        data.check_data_root(str(tmp_path))


def test_missing_spans_or_files_are_rejected(tmp_path):
    with pytest.raises(data.DataError, match='no span directories'):
        data.check_data_root(str(tmp_path / 'nowhere'))
    (tmp_path / 'span-1').mkdir()
    with pytest.raises(data.DataError, match='no .csv files'):
        data.check_data_root(str(tmp_path))


def test_a_span_larger_than_the_sample_is_drawn_deterministically(tmp_path):
    first = data.prepare_sample(str(tmp_path / 'a'), rows=40_000, seed=3)
    again = data.prepare_sample(str(tmp_path / 'b'), rows=40_000, seed=3)
    _, rows = data.read_rows(first)
    assert len(rows) == 40_000
    with open(first, 'rb') as a, open(again, 'rb') as b:
        assert a.read() == b.read()
    _, sample = data.read_rows(data.taxi_sample_path())
    assert {tuple(r) for r in rows} <= {tuple(r) for r in sample}
    with pytest.raises(data.DataError, match='pass --seed'):
        data.prepare_sample(str(tmp_path / 'c'), rows=40_000)
