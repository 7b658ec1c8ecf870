import os
import subprocess
import sys

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


_AHEAD = '''
import multiprocessing, sys
from pipeline import data
answer = data.check_and_count_ahead(sys.argv[1])
children = len(multiprocessing.active_children())
if sys.argv[2] == 'kill':
    for child in multiprocessing.active_children():
        child.kill()
try:
    print(children, *answer())
except data.DataError as e:
    print(children, 'DataError', e)
'''


def _ahead(root, how='wait'):
    """(child processes right after the check began, the answer or the refusal) in a fresh interpreter."""
    done = subprocess.run([sys.executable, '-c', _AHEAD, str(root), how], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    children, *rest = done.stdout.split(maxsplit=1)
    return int(children), rest[0].strip() if rest else ''


@pytest.mark.parametrize('how', ['wait', 'kill'])
def test_the_check_begun_ahead_in_a_child_answers_as_the_check(tmp_path, taxi_rows, how):
    """Begun before TensorFlow loads, the check runs in a child process; its answer, or its refusal, is the
    check's own, and a child that dies leaves the check to this process, not undone."""
    header, rows = taxi_rows
    write_csv(str(tmp_path / 'good' / 'span-1' / 'a.csv'), header, rows[:7])
    write_csv(str(tmp_path / 'good' / 'span-1' / 'b.csv'), header, rows[:5])
    children, answer = _ahead(tmp_path / 'good', how)
    assert children == 1
    assert answer == f'{tmp_path / "good" / "span-1"} 12'
    (tmp_path / 'bad' / 'span-1').mkdir(parents=True)
    (tmp_path / 'bad' / 'span-1' / 'data.csv').write_text('fare,tips\n1.0,2.0\n3.0\n')
    with pytest.raises(data.DataError) as refused:
        data.check_data_root(str(tmp_path / 'bad'))
    assert _ahead(tmp_path / 'bad', how) == (1, f'DataError {refused.value}')


def test_with_tensorflow_loaded_the_check_runs_here_when_waited_for(tmp_path, taxi_rows, monkeypatch):
    monkeypatch.setitem(sys.modules, 'tensorflow', object())
    (tmp_path / 'span-1').mkdir()
    answer = data.check_and_count_ahead(str(tmp_path))  # no files yet: refused only when waited for
    header, rows = taxi_rows
    write_csv(str(tmp_path / 'span-1' / 'a.csv'), header, rows[:3])
    assert answer() == (str(tmp_path / 'span-1'), 3)
