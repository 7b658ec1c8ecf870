"""Traffic whose inputs drifted but whose labels still follow them as before (covariate shift), drawn
from rows of the taxi sample, deterministically.

`pipeline.data.drifted` edits rows (fares tripled, cards turned to cash with their tips zeroed): that
moves P(label | features) too, so a model's calibration no longer holds on it. Here rows are drawn
whole, never edited, with weights that depend on their features only: P(features) moves, P(label |
features) does not, which is what performance estimation assumes and must survive.
"""

import random
from typing import List, Sequence

PAYMENT, HOUR, CARD = 'payment_type', 'trip_start_hour', 'Credit Card'


def clean(rows: Sequence[dict], k: int, seed: int) -> List[dict]:
    """`k` rows drawn uniformly, with replacement."""
    return random.Random(seed).choices(list(rows), k=k)


def covariate_shifted(rows: Sequence[dict], k: int, seed: int, card_share: float = 0.8,
                      night_weight: float = 3.0) -> List[dict]:
    """`k` rows drawn with replacement so that card payments make up about `card_share` of them (the
    sample has a third), and trips starting between 22:00 and 05:59 are `night_weight` times as likely
    as others of their payment type."""
    rows = list(rows)
    cards = sum(1 for r in rows if r.get(PAYMENT) == CARD)
    others = len(rows) - cards
    if not cards or not others:
        raise ValueError('the rows need card and other payments to shift between')

    def weight(row):
        share = card_share / cards if row.get(PAYMENT) == CARD else (1 - card_share) / others
        hour = row.get(HOUR)
        night = hour not in (None, '') and (int(hour) >= 22 or int(hour) < 6)
        return share * (night_weight if night else 1.0)
    return random.Random(seed).choices(rows, weights=[weight(r) for r in rows], k=k)
