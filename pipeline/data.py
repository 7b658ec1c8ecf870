"""Input data: the taxi sample shipped with TFX, laid out as spans, and checks.

The data root holds one directory per span (`span-1/`, `span-2/`, ...), each
with CSV files. ExampleGen reads the latest span, so new data arrives by
adding a directory; the pipeline does not change.
"""

from __future__ import annotations

import concurrent.futures
import csv
import io
import multiprocessing
import os
import random
import re
import sys
import threading
from typing import Callable, Iterable, List, Optional

from foundation.atomic_file import write_atomically
from taxi_model.features import raw_columns

SPAN_DIR = re.compile(r'^span-(\d+)$')


class DataError(ValueError):
    """The data root cannot be used; the message says what to fix."""


def taxi_sample_path() -> str:
    """The 15k-row Chicago Taxi sample inside the installed tfx package."""
    import tfx
    path = os.path.join(os.path.dirname(tfx.__file__), 'examples', 'chicago_taxi_pipeline',
                        'data', 'simple', 'data.csv')
    if not os.path.isfile(path):
        raise DataError(f'the tfx package has no taxi sample at {path}; reinstall tfx==1.16.0')
    return path


def read_rows(path: str) -> tuple[List[str], List[List[str]]]:
    with open(path, newline='') as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, list(reader)


def write_span(data_root: str, span: int, header: List[str], rows: Iterable[List[str]]) -> str:
    """Writes `span-<span>/data.csv` atomically: a reader never sees half a file."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    return write_atomically(os.path.join(data_root, f'span-{span}', 'data.csv'), text.getvalue())


def drifted(header: List[str], rows: List[List[str]]) -> List[List[str]]:
    """The rows as a market that changed: fares tripled, trips moved to the night
    (hour + 12, wrapping), card payments turned to cash (and their tips, which
    the data only records for cards, to 0). Deterministic."""
    at = {name: i for i, name in enumerate(header)}
    changed = []
    for row in rows:
        row = list(row)
        if row[at['fare']]:
            row[at['fare']] = f'{float(row[at["fare"]]) * 3:.2f}'
        if row[at['trip_start_hour']]:
            row[at['trip_start_hour']] = str((int(row[at['trip_start_hour']]) + 12) % 24)
        if row[at['payment_type']] == 'Credit Card':
            row[at['payment_type']], row[at['tips']] = 'Cash', '0.0'
        changed.append(row)
    return changed


def prepare_sample(data_root: str, rows: Optional[int] = None, span: int = 1, seed: Optional[int] = None,
                   drift: bool = False) -> str:
    """Writes a span from the taxi sample; deterministic, idempotent.

    By default the sample's first `rows` rows (all without `rows`). With
    `seed`, `rows` rows drawn with replacement from the first `rows` (a new
    span from the same distribution), or, for more rows than the sample has,
    from all of it (a larger span for benchmarks). With `drift`, the rows as
    `drifted` makes them.
    """
    header, body = read_rows(taxi_sample_path())
    wanted = rows or len(body)
    if wanted > len(body) and seed is None:
        raise DataError(f'the sample has {len(body):,} rows; pass --seed to draw {wanted:,} with replacement')
    body = body[:wanted]
    if seed is not None:
        body = random.Random(seed).choices(body, k=wanted)
    return write_span(data_root, span, header, drifted(header, body) if drift else body)


def span_dirs(data_root: str) -> List[tuple[int, str]]:
    if not os.path.isdir(data_root):
        return []
    found = [(int(m.group(1)), os.path.join(data_root, name))
             for name in os.listdir(data_root) if (m := SPAN_DIR.match(name))]
    return sorted(found)


def check_data_root(data_root: str) -> str:
    """Checks what ExampleGen would choke on obscurely; returns the latest span's dir."""
    return check_and_count(data_root)[0]


def check_and_count(data_root: str) -> tuple[str, int]:
    """As `check_data_root`, and counts the span's data rows: (span dir, rows), what the run must account for.

    Schema-level problems (types, domains, missing columns) are left to
    ExampleValidator and the anomalies gate, which report them per feature.
    This catches what comes before: no spans, no files, empty or ragged CSVs.
    """
    spans = span_dirs(data_root)
    if not spans:
        raise DataError(f'no span directories (span-1/, span-2/, ...) under {data_root}; '
                        'run `taxi-pipeline prepare-data` or point --data-root at your data')
    span, span_dir = spans[-1]
    files = sorted(f for f in os.listdir(span_dir) if f.endswith('.csv'))
    if not files:
        raise DataError(f'span {span} ({span_dir}) has no .csv files')
    rows = sum(_check_csv(os.path.join(span_dir, name)) for name in files)
    return span_dir, rows


def check_and_count_ahead(data_root: str) -> Callable[[], tuple[str, int]]:
    """`check_and_count` begun in a child process; returns what waits for its answer (or raises its DataError).

    For a caller about to import the pipeline's libraries: the check reads every row of the span with
    Python's csv module, seconds at a million rows, and the imports take seconds on one core, so on a
    second core the two overlap (docs/performance.md#the-data-check-beside-the-imports). A fork is safe
    only before TensorFlow is loaded and while this process has no other thread; otherwise, or if the
    child dies, the check runs in this process when it is waited for. Either way the run waits for the
    check before it writes anything.
    """
    if 'tensorflow' in sys.modules or threading.active_count() > 1:
        return lambda: check_and_count(data_root)
    pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('fork'))
    future = pool.submit(check_and_count, data_root)

    def answer() -> tuple[str, int]:
        try:
            return future.result()
        except concurrent.futures.process.BrokenProcessPool:  # the child died (killed, out of memory): here
            return check_and_count(data_root)
        finally:
            pool.shutdown()
    return answer


def _check_csv(path: str) -> int:
    """The file's data rows, once checked."""
    with open(path, newline='') as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f'{path} is empty: expected a header row and data rows') from None
        except csv.Error as e:
            raise DataError(f'{path}: unreadable CSV ({e})') from None
        unknown = [c for c in header if c not in raw_columns()]
        if not header or unknown == header:
            raise DataError(f'{path}: first row is not a header with the taxi columns '
                            f'(expected names like {", ".join(sorted(raw_columns())[:4])}, ...)')
        rows = 0
        try:
            for row in reader:
                rows += 1
                if len(row) != len(header):
                    raise DataError(f'{path}:{reader.line_num}: {len(row)} fields, '
                                    f'but the header has {len(header)}')
        except csv.Error as e:
            raise DataError(f'{path}:{reader.line_num}: unreadable CSV ({e})') from None
        if rows == 0:
            raise DataError(f'{path} has a header but no data rows')
        return rows
