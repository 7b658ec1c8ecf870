"""Labelled serving traffic as the pipeline's next span: feedback becomes training data.

The request log holds what each served example was sent, the feedback store
what was later observed. Joined by request id and example index they are rows
of the pipeline's own CSV layout, written as the next span of the data root,
so the next run trains, and evaluates its challenger against the serving
model, on recent real traffic.

Left out, and counted, never silently: feedback that names no logged example;
label-only feedback (the layout records tips, from which training derives the
label); examples the serving model flagged as outliers; examples missing a
column the curated schema requires; feedback already exported to an earlier
span (each span's manifest lists what it holds). `trip_start_timestamp`,
which the model ignores and requests do not carry, is the time the example
was served. A span appears whole or not at all: it is written in a hidden
directory and renamed into place.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Dict, List, Sequence

import numpy as np
from tensorflow_metadata.proto.v0 import schema_pb2

from monitoring import request_logs
from pipeline import data
from serving import feedback as feedback_lib

MANIFEST = 'feedback_export.json'
TIMESTAMP_COLUMN = 'trip_start_timestamp'


@dataclasses.dataclass(frozen=True)
class Export:
    span: int
    path: str
    rows: int
    # Reason -> feedback records left out for it.
    left_out: Dict[str, int]


def exported_keys(data_root: str) -> set:
    """(request id, example) of every feedback record an earlier span holds."""
    keys = set()
    for _, span_dir in data.span_dirs(data_root):  # spans only: not what a killed export left
        manifest = os.path.join(span_dir, MANIFEST)
        if os.path.isfile(manifest):
            with open(manifest) as f:
                keys.update((request_id, example) for request_id, example in json.load(f)['examples'])
    return keys


def _value(values, kind: int) -> str:
    if not values:
        return ''
    value = values[0]
    if kind == schema_pb2.FLOAT:
        return str(np.float32(value))  # the shortest text that reads back as the logged float32
    if kind == schema_pb2.INT:
        return str(int(value))
    return value.decode() if isinstance(value, bytes) else str(value)


def export(log_dir: str, feedback_dir: str, data_root: str, span: int, header: Sequence[str],
           schema: schema_pb2.Schema, tips_column: str, outlier_key: str) -> Export:
    """Writes `span-<span>/` of the feedback not yet exported; ValueError if no row qualifies."""
    first, _ = feedback_lib.read(feedback_dir)
    done = exported_keys(data_root)
    left_out = {'already exported': sum(1 for key in first if key in done)}
    pending = {key: record for key, record in first.items() if key not in done}
    with_tips = {key: r for key, r in pending.items() if tips_column in r.observed}
    left_out['label only (the CSV layout records tips)'] = len(pending) - len(with_tips)
    kinds = {f.name: f.type for f in schema.feature if f.name in header}
    _, _, logged = request_logs.read_by_version(
        log_dir, lambda version: None, 0, 0, wanted_ids=frozenset(key[0].encode() for key in with_tips),
        wanted_columns={**kinds, outlier_key: schema_pb2.INT})
    required = [f.name for f in schema.feature
                if f.presence.min_fraction >= 1 and f.name in header and f.name not in (tips_column, TIMESTAMP_COLUMN)]
    rows, keys, taken = [], [], set()
    counts = {'no logged request': 0, 'flagged as an outlier when served': 0,
              'missing a column the schema requires': 0}
    if logged is not None:
        columns = {name: logged.column(name).to_pylist() for name in logged.column_names}
        order = np.argsort(request_logs.scalars(logged.column(request_logs.TIMESTAMP)), kind='stable')
        for i in order:
            key = (columns[request_logs.REQUEST_ID][i][0].decode(), int((columns[request_logs.EXAMPLE_INDEX][i]
                                                                          or [0])[0]))
            if key not in with_tips or key in taken:
                continue  # another request's example, or a reused request id's second
            taken.add(key)
            if (columns[outlier_key][i] or [0])[0]:
                counts['flagged as an outlier when served'] += 1
                continue
            if any(not columns[name][i] for name in required):
                counts['missing a column the schema requires'] += 1
                continue
            row = {name: _value(columns[name][i], kinds[name]) for name in kinds if name in columns}
            row[tips_column] = str(np.float32(with_tips[key].observed[tips_column]))
            row[TIMESTAMP_COLUMN] = str(int(columns[request_logs.TIMESTAMP][i][0]) // 1_000_000)
            rows.append([row.get(name, '') for name in header])
            keys.append(list(key))
    counts['no logged request'] = len(with_tips) - len(taken)
    left_out.update(counts)
    if not rows:
        reasons = ', '.join(f'{count} {reason}' for reason, count in left_out.items() if count)
        raise ValueError(f'no feedback to export as span {span}: '
                         + (reasons or f'the store at {feedback_dir} holds none'))
    return Export(span, _write(data_root, span, header, rows, keys, left_out), len(rows),
                  {reason: count for reason, count in left_out.items() if count})


def _write(data_root: str, span: int, header: Sequence[str], rows: List[List[str]], keys: List, left_out) -> str:
    import csv
    final = os.path.join(data_root, f'span-{span}')
    if os.path.exists(final):
        raise ValueError(f'{final} exists already: spans are never rewritten')
    hidden = os.path.join(data_root, f'.span-{span}.partial')
    shutil.rmtree(hidden, ignore_errors=True)  # what a killed export left
    os.makedirs(hidden)
    with open(os.path.join(hidden, 'data.csv'), 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    with open(os.path.join(hidden, MANIFEST), 'w') as f:
        json.dump({'examples': keys, 'left_out': left_out}, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(hidden, final)
    return final


def write_next_span(feedback_dir: str, request_log_dir: str, data_root: str):
    """The next span from labelled serving traffic, in the latest span's CSV layout (Export)."""
    import csv
    import tensorflow_data_validation as tfdv
    import schemas
    from pipeline import data
    from taxi_model import contract
    from taxi_model.features import LABEL
    spans = data.span_dirs(data_root)
    if not spans:
        raise ValueError(f'no spans under {data_root}: the feedback span follows the training data\'s layout')
    latest = data.check_data_root(data_root)
    with open(os.path.join(latest, sorted(f for f in os.listdir(latest) if f.endswith('.csv'))[0]), newline='') as f:
        header = next(csv.reader(f))
    return export(request_log_dir, feedback_dir, data_root, spans[-1][0] + 1, header,
                  tfdv.load_schema_text(schemas.CURATED_SCHEMA), LABEL.tips_column, contract.IS_OUTLIER)
