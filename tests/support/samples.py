"""Plain helpers the tests share: sample sizes, CSV writing, rows as dicts."""

import csv
import os

# Small enough to keep the suite fast, large enough for a meaningful AUC.
SAMPLE_ROWS = 3000
TRAIN_STEPS = 300
# The commit the second pushed version's run (fixture `versions`) says it ran, as an image built from it would.
SECOND_COMMIT = 'feedc0de' * 5


def write_csv(path, header, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def as_dicts(header, rows):
    return [dict(zip(header, row)) for row in rows]
