"""`predict` and `explain`: send a CSV's rows to a served taxi model (the embedded
server or TF Serving) and print what it answers.

The taxi model's client: rows become requests through the model's serving
contract (`taxi_model.contract`), and travel over the model-agnostic clients
of `serving.client`, by REST or gRPC, to a version or a label.
"""

from __future__ import annotations

import argparse
import csv
import json
import os

from pipeline.config import PIPELINE_NAME
from serving import GRPC_PORT, REST_PORT, TOKEN_ENV


def _server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('csv', help='CSV with a header of raw columns (extra columns, like tips, are ignored)')
    parser.add_argument('--server', default='localhost', help='model server host (default: %(default)s); one '
                        f'started with --auth-tokens gets the bearer token in ${TOKEN_ENV}')
    parser.add_argument('--protocol', choices=['rest', 'grpc'], default='rest')
    parser.add_argument('--port', type=int, help=f'default: {REST_PORT} for REST, {GRPC_PORT} for gRPC')
    parser.add_argument('--model-name', default=PIPELINE_NAME, help='(default: %(default)s)')
    target = parser.add_mutually_exclusive_group()
    target.add_argument('--version', type=int, help='a specific model version')
    target.add_argument('--label', help='a version label, e.g. stable or canary')
    parser.add_argument('--batch-size', type=int, default=100, help='rows per request (default: %(default)s)')
    parser.add_argument('--limit', type=int, help='send only the first N rows')


def register(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser('predict', help='send the rows of a CSV file to a model server and print '
                                  'predictions with their outlier flags')
    _server_arguments(predict)
    # Names from the model's contract, checked by the handler (the contract loads TensorFlow; --help should not).
    predict.add_argument('--signature', help='serving_raw (raw features, the default) or serving_default '
                         '(serialized tf.Examples)')
    predict.set_defaults(handler=predict_command)

    explain = commands.add_parser('explain', help="send the rows of a CSV file to a model server's explain "
                                  'signature and print each prediction, its top attributions and its flags')
    _server_arguments(explain)
    explain.add_argument('--top', type=int, default=3, help='attributions shown per row (default: %(default)s)')
    explain.add_argument('--json', action='store_true', help='one JSON object per row, every attribution')
    explain.set_defaults(handler=explain_command)


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


def _answers(args, signature: str):
    """(first row number, rows, the server's Prediction) per batch of the CSV."""
    from serving import client as client_lib
    from taxi_model import contract
    if args.batch_size < 1:
        raise ValueError('--batch-size must be at least 1')
    rows = read_rows(args.csv, args.limit)
    client = client_lib.connect(args.protocol, args.server, args.port, model_name=args.model_name,
                                token=os.environ.get(TOKEN_ENV) or None)
    try:
        for start in range(0, len(rows), args.batch_size):
            batch = rows[start:start + args.batch_size]
            try:
                inputs = contract.inputs_for(signature, batch)
            except ValueError as e:  # a value the column's type cannot hold
                raise ValueError(f'{args.csv}, rows {start + 1}-{start + len(batch)}: {e}') from None
            yield start + 1, batch, client.predict(inputs, signature=signature, version=args.version,
                                                   label=args.label)
    finally:
        client.close()


def predict_command(args) -> int:
    from taxi_model import contract
    signature = args.signature or contract.PREDICT_RAW
    if signature not in (contract.PREDICT_RAW, contract.PREDICT_EXAMPLES):
        raise ValueError(f'--signature must be {contract.PREDICT_RAW} or {contract.PREDICT_EXAMPLES}, not {signature!r}')
    print('row,probability,big_tipper,model_version,is_outlier,outlier_score,flagged_features')
    for first, _, prediction in _answers(args, signature):
        version = prediction.model_version if prediction.model_version is not None else ''
        for i, (probability, flags) in enumerate(zip(contract.probabilities(prediction.outputs),
                                                     contract.flags(prediction.outputs)), start=first):
            outlier = '' if flags.is_outlier is None else int(flags.is_outlier)
            score = '' if flags.score is None else f'{flags.score:.4g}'
            print(f'{i},{probability:.6f},{int(probability >= 0.5)},{version},{outlier},{score},'
                  f'"{",".join(flags.features)}"')
    return 0


def explain_command(args) -> int:
    from taxi_model import contract
    if args.top < 1:
        raise ValueError('--top must be at least 1')
    for first, _, prediction in _answers(args, contract.EXPLAIN):
        outputs = prediction.outputs
        rows = zip(contract.probabilities(outputs), outputs[contract.BASELINE_PROBABILITY].reshape(-1).tolist(),
                   contract.attributions(outputs), contract.flags(outputs))
        for i, (probability, baseline, attributions, flags) in enumerate(rows, start=first):
            if args.json:
                print(json.dumps({'row': i, 'probability': probability, 'baseline_probability': baseline,
                                  'attributions': attributions, 'is_outlier': flags.is_outlier,
                                  'outlier_score': flags.score, 'flagged_features': list(flags.features),
                                  'model_version': prediction.model_version}))
                continue
            top = sorted(attributions.items(), key=lambda kv: -abs(kv[1]))[:args.top]
            version = f', version {prediction.model_version}' if prediction.model_version is not None else ''
            print(f'row {i}: probability {probability:.4f} (baseline {baseline:.4f}{version})')
            print('  top attributions (log-odds): ' + ', '.join(f'{name} {value:+.3f}' for name, value in top))
            if flags.is_outlier:
                named = f'; outside the schema or vocabulary: {", ".join(flags.features)}' if flags.features else ''
                print(f'  OUTLIER: score {flags.score:.4g}{named}')
            else:
                print(f'  not an outlier (score {flags.score:.4g})')
    return 0
