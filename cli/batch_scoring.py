"""`score`: a CSV or a span scored by a pushed version, into files a warehouse loads.

The rows go through the version's own SavedModel in this process (no server):
`serving_raw`, or `explain` with `--explain`, so every prediction comes with the
model's outlier flags (and attributions). Written atomically, one file per
format, with the stated schema beside them (components/bulk_inferrer/scoring.py).
With `--request-log-dir` the scored rows are also written as a request-log
file, in the server's own encoding, so the monitor watches offline predictions
for skew and drift as it watches served ones.
"""

from __future__ import annotations

import argparse
import glob
import os
import time


def register(commands: argparse._SubParsersAction, default_model_base_path: str) -> None:
    score = commands.add_parser('score', help='score a CSV or a span with a pushed version into CSV/Parquet files '
                                '(predictions with outlier flags; optionally attributions and request logs)')
    score.add_argument('--model-base-path', default=default_model_base_path,
                       help='the push destination (default: %(default)s)')
    score.add_argument('--version', type=int, help='the pushed version (default: the newest complete one)')
    score.add_argument('--input', required=True, help='a CSV file with a header of raw columns, or a span '
                       'directory (span-N/) of them')
    score.add_argument('--output', required=True, help='directory for predictions.<format> and '
                       'predictions.schema.json')
    score.add_argument('--format', action='append', choices=['csv', 'parquet'],
                       help='repeat for both (default: parquet)')
    score.add_argument('--explain', action='store_true', help="add each raw feature's attribution "
                       '(the explain signature: integrated gradients, about 65 model calls per row)')
    score.add_argument('--request-log-dir', help='also write the scored rows as a request log the monitor reads')
    score.set_defaults(handler=score_command)


def _input_files(path: str) -> list:
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, '*.csv')))
        if not files:
            raise ValueError(f'{path} holds no .csv files')
        return files
    if not os.path.isfile(path):
        raise ValueError(f'--input {path}: no such file or directory')
    return [path]


def score_command(args) -> int:
    from cli.served_model import read_rows
    from components.baseline_model import latest_pushed_version
    from components.bulk_inferrer import scoring
    from components.pusher import push_destination
    from foundation.atomic_file import write_atomically
    from pipeline.config import PIPELINE_NAME
    import tensorflow as tf
    started = time.perf_counter()
    files = _input_files(args.input)
    version = str(args.version) if args.version is not None else latest_pushed_version(args.model_base_path)
    if version is None:
        raise ValueError(f'no pushed version under {args.model_base_path}')
    model_dir = os.path.join(args.model_base_path, version)
    if not push_destination.is_complete(model_dir):
        raise ValueError(f'version {version} is not a complete SavedModel under {args.model_base_path}')
    rows, header = [], []
    for path in files:
        found = read_rows(path)
        header += [name for name in found[0] if name not in header]
        rows += found
    model = tf.saved_model.load(model_dir)
    outputs = scoring.score(model, rows, explain=args.explain)
    at = int(time.time() * 1e6)
    data = scoring.table(header, rows, outputs, int(version), args.explain, scored_at_micros=at)
    written = [scoring.write_table(os.path.join(args.output, f'predictions.{fmt}'), data, fmt)
               for fmt in (args.format or ['parquet'])]
    written.append(write_atomically(os.path.join(args.output, 'predictions.schema.json'), scoring.schema_json(data)))
    flagged = int(sum(1 for v in data.column('is_outlier').to_pylist() if v))
    print(f'Scored {len(rows):,} rows of {len(files)} file(s) with version {version}: {flagged:,} flagged as '
          f'outliers, in {time.perf_counter() - started:.1f}s')
    for path in written:
        print(f'  {path}')
    if args.request_log_dir:
        log = scoring.write_request_log(args.request_log_dir, PIPELINE_NAME, int(version), rows, outputs,
                                        at_micros=at)
        print(f'Request log for the monitor: {log}')
    return 0
