"""Traffic for the abuse monitor (monitoring/callers.py): a crowd of normal callers replaying trips
of the taxi sample, and probers walking a line between two trips, searching the decision boundary
one feature at a time, or sending near-duplicates. All deterministic for a seed.

Queries are (caller, request id, index in its request, row); a row is a dict of the raw features
(None where missing). `Tipper` is a stand-in for the taxi model with a real decision boundary:
a logistic rule over the raw features, and an outlier flag."""

import math
import random
from typing import Callable, Dict, List, Tuple

import pyarrow as pa

from monitoring import request_logs
from pipeline import data

FLOATS = ('fare', 'trip_miles', 'pickup_latitude', 'pickup_longitude', 'dropoff_latitude', 'dropoff_longitude')
INTS = ('trip_seconds', 'trip_start_hour', 'trip_start_day', 'trip_start_month', 'pickup_community_area',
        'dropoff_community_area')
NUMERIC = FLOATS + INTS
CATEGORICAL = ('payment_type', 'company')
FEATURES = NUMERIC + CATEGORICAL

Query = Tuple[str, str, int, Dict]


def taxi_trips() -> List[Dict]:
    """The taxi sample's rows as typed dicts of the features above."""
    header, rows = data.read_rows(data.taxi_sample_path())
    trips = []
    for row in rows:
        text = dict(zip(header, row))
        trip = {name: None if text[name] == '' else float(text[name]) for name in FLOATS}
        trip.update({name: None if text[name] == '' else int(float(text[name])) for name in INTS})
        trip.update({name: text[name] or None for name in CATEGORICAL})
        trips.append(trip)
    return trips


def tip_probability(trip: Dict) -> float:
    """The stand-in model: card trips tip, cash ones do not, dearer trips tip more. Its boundary
    (0.5) runs through ordinary card fares (about $8.70 for a short trip)."""
    card = trip.get('payment_type') == 'Credit Card'
    logit = (0.5 if card else -5.0) + 0.15 * ((trip.get('fare') or 0.0) - 12.0) - 0.02 * (trip.get('trip_miles') or 0.0)
    return 1.0 / (1.0 + math.exp(-max(min(logit, 50.0), -50.0)))


def is_outlier(trip: Dict) -> bool:
    fare, miles = trip.get('fare'), trip.get('trip_miles')
    return (fare is not None and not 0 <= fare <= 150) or (miles is not None and not 0 <= miles <= 80)


# -- callers ------------------------------------------------------------------------------------------

def crowd(trips: List[Dict], rng: random.Random, callers: int, requests: int) -> Dict[str, List[List[Dict]]]:
    """Normal callers: each replays random trips, one to five per request (as the demo's clients
    batch them). caller -> its requests, each a list of trips."""
    return {f'client-{c:02d}': [[rng.choice(trips) for _ in range(rng.choice((1, 1, 1, 2, 5)))]
                                for _ in range(requests)] for c in range(callers)}


def _between(a: Dict, b: Dict, share: float) -> Dict:
    trip = {}
    for name in NUMERIC:
        if a[name] is None or b[name] is None:
            trip[name] = a[name] if share < 0.5 else b[name]
        else:
            value = a[name] + (b[name] - a[name]) * share
            trip[name] = int(round(value)) if name in INTS else value
    for name in CATEGORICAL:
        trip[name] = a[name] if share < 0.5 else b[name]
    return trip


def line_walk(trips: List[Dict], rng: random.Random, queries: int) -> List[Dict]:
    """Evenly spaced points on the line between two trips of different classes: how a boundary is
    located between a known tipper and a known non-tipper."""
    ordinary = [t for t in trips if t['fare'] is not None and not is_outlier(t)]
    tippers = [t for t in ordinary if tip_probability(t) > 0.7]
    others = [t for t in ordinary if tip_probability(t) < 0.3]
    a, b = rng.choice(tippers), rng.choice(others)
    return [_between(a, b, i / (queries - 1)) for i in range(queries)]


def boundary_search(trips: List[Dict], rng: random.Random, queries: int,
                    predict: Callable[[Dict], float] = tip_probability) -> List[Dict]:
    """For one card trip after another: bisection on the fare until the answer is 0.5, then small
    steps either side of it. `predict` is the model asked (the stand-in, or a server)."""
    cards = [t for t in trips if t['payment_type'] == 'Credit Card' and t['fare'] is not None]
    sent: List[Dict] = []
    while len(sent) < queries:
        base = rng.choice(cards)
        low, high = 0.0, 100.0
        for _ in range(8):
            middle = (low + high) / 2
            trip = dict(base, fare=middle)
            sent.append(trip)
            if predict(trip) > 0.5:
                high = middle
            else:
                low = middle
        for step in range(-4, 5):
            sent.append(dict(base, fare=(low + high) / 2 + 0.05 * step))
    return sent[:queries]


def near_duplicates(trips: List[Dict], rng: random.Random, queries: int) -> List[Dict]:
    """One trip over and over, its fare jittered by a cent or two (a cache-busting flood)."""
    base = dict(rng.choice([t for t in trips if t['fare'] is not None]))
    return [dict(base, fare=base['fare'] + rng.uniform(-0.02, 0.02)) for _ in range(queries)]


def perturbations(trips: List[Dict], rng: random.Random, queries: int, per_seed: int = 4) -> List[Dict]:
    """Jacobian-style augmentation (Papernot et al.'s JbDA, as PRADA's paper attacks): a real trip,
    then `per_seed` copies with one numeric feature moved by a tenth of its value. Of the probers
    here the nearest to a crowd: most of its distances are a real trip's to the ones before."""
    sent: List[Dict] = []
    while len(sent) < queries:
        seed = rng.choice(trips)
        sent.append(seed)
        for _ in range(per_seed):
            present = [name for name in NUMERIC if seed[name] is not None] or ['fare']
            name = rng.choice(present)
            trip = dict(seed)
            if trip[name] is not None:
                value = trip[name] + 0.1 * (abs(trip[name]) + 1) * rng.choice((-1, 1))
                trip[name] = int(round(value)) if name in INTS else value
            sent.append(trip)
    return sent[:queries]


PROBERS = {'line-walker': line_walk, 'boundary-searcher': boundary_search, 'duplicator': near_duplicates}
# Measured in benchmarks/caller_detection_benchmark.py; not one the tests require to be named.
HARDER_PROBERS = {'perturber': perturbations}


def in_requests(trips: List[Dict], size: int) -> List[List[Dict]]:
    return [trips[i:i + size] for i in range(0, len(trips), size)]


def instance(trip: Dict) -> Dict:
    """The trip as a REST instance of `Tipper`'s signature: the missing-value markers for None."""
    out = {}
    for name in FLOATS:
        out[name] = float('nan') if trip[name] is None else float(trip[name])
    for name in INTS:
        out[name] = -1 if trip[name] is None else int(trip[name])
    for name in CATEGORICAL:
        out[name] = trip[name] or ''
    return out


def tipper_module():
    """The stand-in model as a SavedModel-able tf.Module: `serving_default` takes one tensor per
    feature (NaN, -1 and '' mark a missing value, as the taxi model's `serving_raw`) and answers
    `probabilities` [batch, 1] and `is_outlier` [batch]."""
    import tensorflow as tf

    specs = [tf.TensorSpec([None], tf.float32, name=n) for n in FLOATS] + \
        [tf.TensorSpec([None], tf.int64, name=n) for n in INTS] + \
        [tf.TensorSpec([None], tf.string, name=n) for n in CATEGORICAL]

    class Tipper(tf.Module):
        @tf.function(input_signature=specs)
        def predict(self, *inputs):
            named = dict(zip(FEATURES, inputs))
            fare = tf.where(tf.math.is_nan(named['fare']), 0.0, named['fare'])
            miles = tf.where(tf.math.is_nan(named['trip_miles']), 0.0, named['trip_miles'])
            card = tf.cast(tf.equal(named['payment_type'], 'Credit Card'), tf.float32)
            logit = card * 0.5 + (1.0 - card) * -5.0 + 0.15 * (fare - 12.0) - 0.02 * miles
            outlier = tf.logical_or(tf.logical_or(fare < 0.0, fare > 150.0), tf.logical_or(miles < 0.0, miles > 80.0))
            return {'probabilities': tf.reshape(tf.sigmoid(logit), [-1, 1]), 'is_outlier': outlier}

    return Tipper()


MISSING_VALUES = {'serving_default': {**{n: 'nan' for n in FLOATS}, **{n: 'negative' for n in INTS},
                                      **{n: 'empty' for n in CATEGORICAL}}}


def interleave(schedules: Dict[str, List], rng: random.Random) -> List[Tuple[str, int]]:
    """(caller, index) for every caller's items, callers interleaved at random, each in its own order."""
    order = [name for name, items in schedules.items() for _ in items]
    rng.shuffle(order)
    seen: Dict[str, int] = {}
    out = []
    for name in order:
        out.append((name, seen.get(name, 0)))
        seen[name] = seen.get(name, 0) + 1
    return out


def _list(values, kind):
    return pa.array([None if v is None else [v] for v in values], pa.list_(kind))


def log_table(requests, with_caller=True, start_micros: int = 1_700_000_000_000_000):
    """The columns `request_logs.read_by_version` reads, for (caller, [trips]) requests in the order
    served, each answered by the stand-in model: one row per trip."""
    rows = [(caller, f'{caller}-{r}', i, trip, start_micros + 200_000 * r)
            for r, (caller, batch) in enumerate(requests) for i, trip in enumerate(batch)]
    columns = {name: _list([row[3][name] for row in rows], pa.float32() if name in FLOATS else pa.int64())
               for name in NUMERIC}
    columns.update({name: _list([None if row[3][name] is None else row[3][name].encode() for row in rows],
                                pa.binary()) for name in CATEGORICAL})
    columns['probabilities'] = _list([tip_probability(row[3]) for row in rows], pa.float32())
    columns['is_outlier'] = _list([int(is_outlier(row[3])) for row in rows], pa.int64())
    columns[request_logs.REQUEST_ID] = _list([row[1].encode() for row in rows], pa.binary())
    columns[request_logs.EXAMPLE_INDEX] = _list([row[2] for row in rows], pa.int64())
    columns[request_logs.TIMESTAMP] = _list([row[4] for row in rows], pa.int64())
    if with_caller:
        columns[request_logs.CALLER] = _list([row[0].encode() for row in rows], pa.binary())
    return pa.table(columns)
