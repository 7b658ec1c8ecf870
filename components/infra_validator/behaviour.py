"""Behaviour tests of a served model: a declarative suite kept next to the model, in the spirit of
CheckList (Ribeiro et al., 2020): minimum functionality, invariance, directional expectations, and
consistency across signatures. Plain logic, no TFX, no model code: the suite names the signature,
the output and the rows; a case that fails names its rows.

    signature: serving_raw            # what cases call unless they say
    output: probabilities             # the number each case judges, one per row
    example_signatures: {serving_default: examples}   # signatures fed serialized tf.Examples, by input
    rows:                             # named row sets, complete raw rows
      card_trips: [{fare: 12.5, payment_type: Credit Card, ...}, ...]
    cases:
      - name: cash trips predict a low tip probability
        kind: minimum                 # each row's output within [min, max]
        rows: card_trips
        set: {payment_type: Cash}     # optional edits of every row first (set a value, add to one)
        max: 0.2
      - name: the company's name barely matters
        kind: invariance              # |output(edited) - output(row)| <= tolerance
        rows: card_trips
        set: {company: Another Cab Co}
        tolerance: 0.05
      - name: paying cash lowers the tip probability
        kind: directional             # output(edited) - output(row) has the sign of `direction`
        rows: card_trips
        set: {payment_type: Cash}
        direction: decrease
      - name: identical rows predict identically in every signature
        kind: consistency             # each row twice in a batch, and in every signature listed
        rows: card_trips
        signatures: [serving_raw, serving_default]
        tolerance: 1.0e-5
"""

from __future__ import annotations

import base64
import json
from typing import Callable, Dict, List, Mapping, Sequence

import yaml

from components.infra_validator.report import Check

KINDS = ('minimum', 'invariance', 'directional', 'consistency')
Row = Dict[str, object]
# (suite, signature, rows) -> one number per row
Predict = Callable[[Mapping, str, Sequence[Row]], List[float]]


def load(text: str) -> Dict:
    """A suite from its YAML text; ValueError naming what is wrong."""
    suite = yaml.safe_load(text) if text else None
    if not isinstance(suite, dict) or not isinstance(suite.get('cases'), list) or not suite['cases']:
        raise ValueError('a behaviour suite is a mapping with a non-empty `cases:` list')
    rows = suite.get('rows') or {}
    for case in suite['cases']:
        name = case.get('name') or '?'
        if case.get('kind') not in KINDS:
            raise ValueError(f'behaviour case {name!r}: kind must be one of {", ".join(KINDS)}')
        if case.get('rows') not in rows:
            raise ValueError(f'behaviour case {name!r}: rows {case.get("rows")!r} are not among the suite\'s rows')
    return suite


class RestPredictor:
    """Calls the model over TF Serving's REST predict API; tf.Example inputs built from the rows' JSON types."""

    def __init__(self, session, model_url: str):
        self.session, self.model_url = session, model_url

    def __call__(self, suite: Mapping, signature: str, rows: Sequence[Row]) -> List[float]:
        example_input = (suite.get('example_signatures') or {}).get(signature)
        if example_input:
            body = {'signature_name': signature,
                    'instances': [{example_input: {'b64': base64.b64encode(to_example(r)).decode()}} for r in rows]}
        else:
            body = {'signature_name': signature, 'instances': [dict(r) for r in rows]}
        response = self.session.post(f'{self.model_url}:predict', data=json.dumps(body), timeout=60)
        answer = json.loads(response.text)
        if response.status_code != 200:
            raise RuntimeError(f'{signature}: HTTP {response.status_code}: {answer.get("error", "")}'[:300])
        output = suite['output']
        return [_number(p[output] if isinstance(p, dict) else p) for p in answer['predictions']]


def _number(value) -> float:
    while isinstance(value, list):
        if len(value) != 1:
            raise RuntimeError(f'expected one number per row, got {value!r}')
        value = value[0]
    return float(value)


def to_example(row: Mapping[str, object]) -> bytes:
    """A serialized tf.Example of a row: floats as float_list, ints as int64_list, strings as bytes_list."""
    from tensorflow.core.example import example_pb2
    example = example_pb2.Example()
    for name, value in row.items():
        feature = example.features.feature[name]
        if isinstance(value, bool) or isinstance(value, int):
            feature.int64_list.value.append(int(value))
        elif isinstance(value, float):
            feature.float_list.value.append(value)
        elif value is not None:
            feature.bytes_list.value.append(str(value).encode())
    return example.SerializeToString()


def _edited(rows: Sequence[Row], case: Mapping) -> List[Row]:
    out = []
    for row in rows:
        row = dict(row)
        row.update(case.get('set') or {})
        for name, delta in (case.get('add') or {}).items():
            row[name] = row[name] + delta
        out.append(row)
    return out


def _show(row: Row) -> str:
    return '{' + ', '.join(f'{k}: {v}' for k, v in row.items()) + '}'


def run(suite: Mapping, predict) -> List:
    """Every case as a Check (components.infra_validator.checks.Check): passed, or the rows that failed."""
    checks = []
    default = suite.get('signature', 'serving_default')
    for case in suite['cases']:
        name, kind = case['name'], case['kind']
        rows = list(suite['rows'][case['rows']])
        signature = case.get('signature', default)
        try:
            failures = _judge(suite, case, kind, rows, signature, predict)
        except Exception as e:  # an error answering is the case failing
            failures = [f'the model could not answer: {str(e).splitlines()[0] if str(e) else type(e).__name__}']
        detail = (f'{len(rows)} row(s) as expected' if not failures else
                  f'{len(failures)} of {len(rows)} row(s) failed: ' + '; '.join(failures[:3])
                  + (' ...' if len(failures) > 3 else ''))
        checks.append(Check(f'behaviour: {name}', not failures, detail))
    return checks


def _judge(suite, case, kind, rows, signature, predict) -> List[str]:
    failures = []
    if kind == 'minimum':
        edited = _edited(rows, case)
        low, high = case.get('min', float('-inf')), case.get('max', float('inf'))
        for row, value in zip(edited, predict(suite, signature, edited)):
            if not low <= value <= high:
                failures.append(f'{_show(row)} -> {value:.4f}, outside [{low}, {high}]')
    elif kind in ('invariance', 'directional'):
        edited = _edited(rows, case)
        before, after = predict(suite, signature, rows), predict(suite, signature, edited)
        for row, a, b in zip(rows, before, after):
            change = b - a
            if kind == 'invariance' and abs(change) > case.get('tolerance', 0.0):
                failures.append(f'{_show(row)}: {a:.4f} -> {b:.4f} (changed by {change:+.4f}, tolerance '
                                f'{case.get("tolerance", 0.0)})')
            if kind == 'directional':
                expected = case.get('direction', 'increase')
                if (change < 0) if expected == 'increase' else (change > 0):
                    failures.append(f'{_show(row)}: {a:.4f} -> {b:.4f}, expected to {expected}')
    else:  # consistency
        tolerance = case.get('tolerance', 1e-6)
        signatures = case.get('signatures') or [signature]
        doubled = [row for row in rows for _ in range(2)]
        answers = {s: predict(suite, s, doubled) for s in signatures}
        for i, row in enumerate(rows):
            values = [v for s in signatures for v in answers[s][2 * i:2 * i + 2]]
            if max(values) - min(values) > tolerance:
                failures.append(f'{_show(row)}: ' + ', '.join(f'{s} {answers[s][2 * i]:.6f}/{answers[s][2 * i + 1]:.6f}'
                                                              for s in signatures))
    return failures
