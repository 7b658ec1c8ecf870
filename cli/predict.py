"""`predict`: send a CSV's rows to a model server (the embedded one or TF Serving) and print predictions.

The taxi model's client: rows become requests through the model's serving
contract (`taxi_model.contract`), and travel over the model-agnostic clients
of `serving.client`.
"""

from __future__ import annotations

import argparse
import csv

from pipeline.config import PIPELINE_NAME
from serving import GRPC_PORT, REST_PORT


def register(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser('predict', help='send the rows of a CSV file to a model server and print predictions')
    predict.add_argument('csv', help='CSV with a header of raw columns (extra columns, like tips, are ignored)')
    predict.add_argument('--server', default='localhost', help='model server host (default: %(default)s)')
    predict.add_argument('--protocol', choices=['rest', 'grpc'], default='rest')
    predict.add_argument('--port', type=int, help=f'default: {REST_PORT} for REST, {GRPC_PORT} for gRPC')
    predict.add_argument('--model-name', default=PIPELINE_NAME, help='(default: %(default)s)')
    target = predict.add_mutually_exclusive_group()
    target.add_argument('--version', type=int, help='a specific model version')
    target.add_argument('--label', help='a version label, e.g. stable or canary')
    # Names from the model's contract, checked by the handler (the contract loads TensorFlow; --help should not).
    predict.add_argument('--signature', help='serving_raw (raw features, the default) or serving_default '
                         '(serialized tf.Examples)')
    predict.add_argument('--batch-size', type=int, default=100, help='rows per request (default: %(default)s)')
    predict.add_argument('--limit', type=int, help='send only the first N rows')
    predict.set_defaults(handler=predict_command)


def read_rows(path: str, limit=None) -> list:
    """The CSV's rows as dicts; ValueError when it cannot be read or has none."""
    try:
        with open(path, newline='') as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f'cannot read {path}: {e}') from None
    rows = rows[:limit] if limit is not None else rows
    if not rows:
        raise ValueError(f'{path} has no data rows')
    return rows


def predict_command(args) -> int:
    from serving import client as client_lib
    from taxi_model import contract
    if args.batch_size < 1:
        raise ValueError('--batch-size must be at least 1')
    signature = args.signature or contract.PREDICT_RAW
    if signature not in (contract.PREDICT_RAW, contract.PREDICT_EXAMPLES):
        raise ValueError(f'--signature must be {contract.PREDICT_RAW} or {contract.PREDICT_EXAMPLES}, not {signature!r}')
    rows = read_rows(args.csv, args.limit)
    client = client_lib.connect(args.protocol, args.server, args.port, model_name=args.model_name)
    try:
        print('row,probability,big_tipper,model_version')
        for start in range(0, len(rows), args.batch_size):
            batch = rows[start:start + args.batch_size]
            try:
                inputs = contract.inputs_for(signature, batch)
            except ValueError as e:  # a value the column's type cannot hold
                raise ValueError(f'{args.csv}, rows {start + 1}-{start + len(batch)}: {e}') from None
            prediction = client.predict(inputs, signature=signature, version=args.version, label=args.label)
            version = prediction.model_version if prediction.model_version is not None else ''
            for i, probability in enumerate(contract.probabilities(prediction.outputs), start=start + 1):
                print(f'{i},{probability:.6f},{int(probability >= 0.5)},{version}')
    finally:
        client.close()
    return 0
