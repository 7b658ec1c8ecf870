"""What the infra validation component does with its artifacts: serves the candidate's SavedModel
(`checks.validate`) and writes TFX's InfraBlessing as TFX's InfraValidator does (an INFRA_BLESSED or
INFRA_NOT_BLESSED file and the `blessed` property, which TFX's Pusher checks), plus the figures and every
check's outcome, so ML Metadata, the run report and the model card can say why."""

import json
import os

import tensorflow as tf
from absl import logging
from tfx.types import standard_artifacts

from components.baseline_model import SERVING_SUBDIR
from components.infra_validator import behaviour, checks

# tfx/components/infra_validator/executor.py: the files and the property TFX's Pusher reads.
BLESSED_FILE, NOT_BLESSED_FILE, BLESSED = 'INFRA_BLESSED', 'INFRA_NOT_BLESSED', 'blessed'
REPORT_FILE = 'infra_validation.json'
# Properties of the blessing: the one-line reason, and the figures.
REASON, LOAD_SECONDS, P99_MS, MEMORY_MB, CHECKS_PASSED, CHECKS_FAILED = (
    'reason', 'load_seconds', 'p99_ms', 'memory_mb', 'checks_passed', 'checks_failed')


def validate(model: standard_artifacts.Model, blessing: standard_artifacts.InfraBlessing,
             limits: str, behaviour_suite: str) -> checks.Report:
    """Validates `model`, records the outcome on `blessing`. A model that fails is not blessed (the Pusher
    then pushes nothing); only a broken configuration raises."""
    parsed_limits = checks.Limits.from_json(limits)
    suite = behaviour.load(behaviour_suite) if behaviour_suite else None
    report = checks.validate(os.path.join(model.uri, SERVING_SUBDIR), parsed_limits, suite, log=logging.info)
    tf.io.gfile.makedirs(blessing.uri)
    with tf.io.gfile.GFile(os.path.join(blessing.uri, BLESSED_FILE if report.passed else NOT_BLESSED_FILE), 'w') as f:
        f.write('')
    with tf.io.gfile.GFile(os.path.join(blessing.uri, REPORT_FILE), 'w') as f:
        f.write(json.dumps({**report.as_dict(), 'limits': json.loads(parsed_limits.to_json())}, indent=2,
                           sort_keys=True))
    blessing.set_int_custom_property(BLESSED, int(report.passed))
    blessing.set_string_custom_property(REASON, report.reason())
    blessing.set_int_custom_property(CHECKS_PASSED, sum(c.passed for c in report.checks))
    blessing.set_string_custom_property(CHECKS_FAILED, json.dumps([c.name for c in report.failed]))
    for name, value in ((LOAD_SECONDS, report.load_seconds), (MEMORY_MB, report.memory_mb),
                        (P99_MS, max((v['p99'] for v in report.latency_ms.values()), default=None))):
        if value is not None:
            blessing.set_float_custom_property(name, float(value))
    if report.passed:
        logging.info('Infra validation passed: %d checks', len(report.checks))
    else:
        logging.warning('Infra validation FAILED, the model will not be pushed: %s', report.reason())
    return report
