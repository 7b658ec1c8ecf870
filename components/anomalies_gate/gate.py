"""What the anomalies gate stops a run with, importing no TFX: the errors, and one readable line
per anomaly they carry."""

from typing import Dict, List

from tensorflow_metadata.proto.v0 import anomalies_pb2


class DataAnomaliesError(RuntimeError):
    """The data does not match the curated schema; the message says how."""

    def __init__(self, problems: Dict[str, List[str]]):
        self.problems = problems
        lines = ['Data anomalies found; stopping before Transform and Trainer.']
        for split, split_problems in problems.items():
            lines.append(f'  split {split!r}:')
            lines.extend(f'    - {p}' for p in split_problems)
        lines.append('Fix the data, or, if the change is intended, update schemas/schema.pbtxt '
                     '(see `taxi-pipeline schema-draft`).')
        super().__init__('\n'.join(lines))


class DataDriftError(RuntimeError):
    """The new data drifted from the serving model's training data, and the policy blocks."""

    def __init__(self, baseline_version: str, lines: List[str]):
        self.lines = lines
        super().__init__('\n'.join(
            [f'Data drift against the data serving version {baseline_version} was trained on; the drift policy '
             'blocks, so the run stops before Transform and Trainer.']
            + [f'  - {line}' for line in lines]
            + ['If the change is real and intended, run with --drift-policy warn (the model is then marked as '
               'trained on drifted data), or adjust the drift comparators in schemas/schema.pbtxt.']))


# What the gate raises: data that must not be trained on (the CLI's exit code 2).
GATE_ERRORS = (DataAnomaliesError, DataDriftError)


def describe(anomalies: anomalies_pb2.Anomalies) -> List[str]:
    """One readable line per anomalous feature (and one for dataset-level issues)."""
    lines = []
    for feature_name, info in sorted(anomalies.anomaly_info.items()):
        reasons = '; '.join(r.description or r.short_description for r in info.reason)
        lines.append(f'{feature_name}: {info.short_description or "anomaly"} ({reasons})')
    if anomalies.HasField('dataset_anomaly_info'):
        info = anomalies.dataset_anomaly_info
        reasons = '; '.join(r.description or r.short_description for r in info.reason)
        lines.append(f'<dataset>: {info.short_description or "anomaly"} ({reasons})')
    return lines
