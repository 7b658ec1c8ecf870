"""The Tuner's executor: TFX's Tuner executor when `tune` is 1; else the last tuning (or the defaults)
passed on. Either way the HyperParameters artifact says where its values came from (`source`), which
tuning found them (`tuned_uri`), and what every trial of that tuning scored (`trials`)."""

import json
import os
import time

from absl import logging
from tfx.components.tuner import executor as tuner_executor
from tfx.dsl.components.base import base_executor
from tfx.proto import trainer_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, json_utils, proto_utils

from components.tuner import tuning_records
from foundation import metadata_store
from taxi_model.hyperparameters import Hyperparameters

TUNE, MAX_TRIALS, MAX_SECONDS = 'tune', 'max_trials', 'max_seconds'
TRIAL_STEPS, EVAL_STEPS = 'trial_steps', 'eval_steps'
RECORDS_DIR, METADATA_CONNECTION, KNOWN_TUNING = 'records_dir', 'metadata_connection', 'known_tuning'
# TFX's file names: the Trainer reads the one file of the HyperParameters artifact.
BEST_FILE = 'best_hyperparameters.txt'
TRIALS_FILE = 'trials.json'
OBJECTIVE = 'val_auc'  # taxi_model.tuning.OBJECTIVE, not imported: that module loads KerasTuner
# Where the Tuner's budget travels to tuner_fn (taxi_model.tuning.TUNING_KEY).
TUNING_KEY = 'tuning'


def _set(artifact, name: str, value) -> None:
    if isinstance(value, bool):
        artifact.set_int_custom_property(name, int(value))
    elif isinstance(value, int):
        artifact.set_int_custom_property(name, value)
    elif isinstance(value, float):
        artifact.set_float_custom_property(name, value)
    else:
        artifact.set_string_custom_property(name, value if isinstance(value, str) else json.dumps(value,
                                                                                               sort_keys=True))


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        started = time.time()
        config = json_utils.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or 'null') or {}
        defaults = Hyperparameters.from_custom_config(config)
        best = artifact_utils.get_single_instance(output_dict[standard_component_specs.BEST_HYPERPARAMETERS_KEY])
        results = artifact_utils.get_single_instance(output_dict[standard_component_specs.TUNER_RESULTS_KEY])
        directory = exec_properties[RECORDS_DIR]
        if int(exec_properties[TUNE]):
            record = self._tune(input_dict, output_dict, exec_properties, config, best.uri, started)
            tuning_records.write(directory, record)
            source = tuning_records.TUNED
        else:
            store = metadata_store.connect_parameter(exec_properties.get(METADATA_CONNECTION) or '')
            is_known = None if store is None else (lambda uri: bool(store.get_artifacts_by_uri(uri)))
            record = tuning_records.latest(directory, is_known, log=logging.warning)
            source = tuning_records.PREVIOUS if record is not None else tuning_records.DEFAULTS
            values = record.values if record is not None else defaults.tuned_values()
            io_utils.write_string_file(os.path.join(best.uri, BEST_FILE),
                                       json.dumps({'space': [], 'values': dict(values)}))
            io_utils.write_string_file(os.path.join(results.uri, TRIALS_FILE),
                                       tuning_records.trials_json(record.trials if record else []))
        values = record.values if record is not None else defaults.tuned_values()
        defaults.with_tuned(values)  # refuses values this model cannot take, here rather than in the Trainer
        properties = {'source': source, 'hyperparameters': tuning_records.summary(values), 'tune': source == 'tuned',
                      'records_dir': directory}
        if record is not None:
            properties.update({'tuned_uri': record.artifact_uri, 'tuned_at': record.tuned_at,
                               'tuning_seconds': record.seconds, 'trials': tuning_records.trials_json(record.trials),
                               'trial_count': len(record.trials), 'objective': record.objective,
                               'max_trials': record.max_trials, 'max_seconds': record.max_seconds,
                               'trial_steps': record.trial_steps})
            if record.score is not None:
                properties['best_score'] = float(record.score)
        for artifact in (best, results):
            for name, value in properties.items():
                _set(artifact, name, value)
        logging.info('Tuner: %s hyperparameters %s', source, values)

    def _tune(self, input_dict, output_dict, exec_properties, config, uri: str, started: float
              ) -> tuning_records.Record:
        properties = dict(exec_properties)
        max_trials, max_seconds = int(properties[MAX_TRIALS]), float(properties[MAX_SECONDS])
        trial_steps, eval_steps = int(properties[TRIAL_STEPS]), int(properties[EVAL_STEPS])
        if trial_steps < 1 or eval_steps < 1:
            raise ValueError(f'tuning needs trial_steps and eval_steps of at least 1, got {trial_steps}, {eval_steps}')
        properties[standard_component_specs.CUSTOM_CONFIG_KEY] = json_utils.dumps(
            {**config, TUNING_KEY: {'max_trials': max_trials, 'max_seconds': max_seconds}})
        properties[standard_component_specs.TRAIN_ARGS_KEY] = proto_utils.proto_to_json(
            trainer_pb2.TrainArgs(num_steps=trial_steps))
        properties[standard_component_specs.EVAL_ARGS_KEY] = proto_utils.proto_to_json(
            trainer_pb2.EvalArgs(num_steps=eval_steps))
        tuner = tuner_executor.search(input_dict, properties, self._get_tmp_dir(), print_tuning_summary=False)
        trials = [tuning_records.Trial(trial_id=t.trial_id, values=dict(t.hyperparameters.values),
                                       score=None if t.score is None else float(t.score), status=str(t.status),
                                       seconds=round(getattr(tuner, 'timings', {}).get(t.trial_id, 0.0), 3) or None)
                  for _, t in sorted(tuner.oracle.trials.items())]
        if not any(t.score is not None for t in trials):
            failed = next((t for t in tuner.oracle.trials.values() if t.message), None)
            raise RuntimeError(f'no tuning trial completed ({len(trials)} started)'
                               + (f': {failed.message.strip().splitlines()[-1]}' if failed else ''))
        # TFX's own outputs: the best values (what the Trainer reads) and the completed trials' results.
        tuner_executor.write_best_hyperparameters(tuner, output_dict)
        results_uri = artifact_utils.get_single_uri(output_dict[standard_component_specs.TUNER_RESULTS_KEY])
        io_utils.write_string_file(os.path.join(results_uri, TRIALS_FILE), tuning_records.trials_json(trials))
        values = tuner.get_best_hyperparameters()[0].values
        logging.info('Tuning: %d trials in %.1f s, best %s', len(trials), time.time() - started, values)
        return tuning_records.new_record(values, trials, OBJECTIVE, uri, started, max_trials, max_seconds,
                                         trial_steps)
