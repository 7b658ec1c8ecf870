"""`run`, `prepare-data`, `schema-draft`, `compile`, `submit`: building and running the DAG.

Each command's parser and handler; `cli.main` only dispatches. Defaults come
from `pipeline.config` (stated once there). Handlers raise ValueError (or a
DataError) for bad input, `PipelineFailed` when a component fails, and
return 0 otherwise; `cli.main` maps exceptions to exit codes.
"""

from __future__ import annotations

import argparse
import os

from foundation.workspace import Workspace
from pipeline import config as config_lib, run_trigger
from pipeline.config import PipelineConfig, Thresholds

COMPILED_DIR = 'kfp'


class PipelineFailed(RuntimeError):
    """A component failed; its own error is the cause."""


def register(commands: argparse._SubParsersAction, workspace: Workspace, run_pages=None) -> None:
    """`run_pages(config, summary, emit_line)`: what writes a run's pages (`cli.main` passes
    provenance.reports.write_run_pages; the pipeline does not import the packages that make them)."""
    run = commands.add_parser('run', help='run the pipeline end to end (LocalDagRunner, SQLite MLMD, Beam DirectRunner)')
    run.add_argument('--workspace', default=workspace.root,
                     help='directory for pipeline outputs, metadata and pushed models (default: %(default)s)')
    run.add_argument('--data-root', help='directory of span-N/ CSV directories (default: <workspace>/data, '
                     'filled with the TFX taxi sample if empty)')
    _steps_and_thresholds(run)
    run.add_argument('--beam-workers', type=int, default=config_lib.BeamSettings().direct_workers,
                     help='Beam DirectRunner workers; more than 1 uses threads (default: %(default)s)')
    run.add_argument('--no-cache', action='store_true', help='re-execute every component')
    run.add_argument('--wait', type=float, default=0, metavar='SECONDS',
                     help='if another run holds the workspace, wait this long for it (default: refuse at once, '
                     'exit 4)')
    run.add_argument('--trigger', choices=run_trigger.KINDS, default=run_trigger.MANUAL,
                     help='why this run happens, recorded with it in ML Metadata (set by `schedule`)')
    run.add_argument('--trigger-detail', default='{}', help='JSON: what fired the trigger (set by `schedule`)')
    run.add_argument('--verbose', action='store_true', help='show TFX and TensorFlow logs')
    run.set_defaults(handler=run_command, run_pages=run_pages)

    prepare = commands.add_parser('prepare-data', help='copy the TFX taxi sample into a span directory')
    prepare.add_argument('--data-root', default=workspace.data_root)
    prepare.add_argument('--rows', type=int, help='the first N rows; with --seed, N rows drawn (more than the '
                         "sample's 15,002 too)")
    prepare.add_argument('--span', type=int, default=1)
    prepare.add_argument('--seed', type=int, help='draw the rows with replacement, with this seed: a new span from '
                         'the same distribution')
    prepare.add_argument('--drift', action='store_true',
                         help='a drifted span: fares tripled, trips at night, card payments turned to cash')
    prepare.set_defaults(handler=prepare_command)

    draft = commands.add_parser('schema-draft',
                                help='infer a schema from data and show how it differs from the curated one')
    draft.add_argument('--data-root', default=workspace.data_root)
    draft.add_argument('--output', default=os.path.join(workspace.root, 'schema_draft', 'schema.pbtxt'))
    draft.set_defaults(handler=schema_draft_command)

    compile_ = commands.add_parser(
        'compile', help='compile for Kubeflow Pipelines (KFP IR YAML) and Vertex AI (PipelineJob JSON)')
    compile_.add_argument('--image', default=os.environ.get('PIPELINE_IMAGE'),
                          help='pipeline image the tasks run in (env PIPELINE_IMAGE)')
    compile_.add_argument('--pipeline-root', default=os.environ.get('PIPELINE_ROOT'),
                          help='artifact root in the cluster, e.g. gs://bucket/pipeline_root (env PIPELINE_ROOT)')
    compile_.add_argument('--data-root', default=os.environ.get('DATA_ROOT'),
                          help='default of the data_root parameter: span-N/ CSV directories in the cluster '
                          '(env DATA_ROOT)')
    compile_.add_argument('--serving-model-dir', default=os.environ.get('SERVING_MODEL_DIR'),
                          help='push destination TF Serving watches (env SERVING_MODEL_DIR)')
    _steps_and_thresholds(compile_)
    beam = config_lib.BeamSettings()
    compile_.add_argument('--beam-runner', choices=config_lib.BEAM_RUNNERS, default=beam.runner)
    compile_.add_argument('--project', default=os.environ.get('GCP_PROJECT'), help='Dataflow project (env GCP_PROJECT)')
    compile_.add_argument('--region', default=os.environ.get('GCP_REGION'), help='Dataflow region (env GCP_REGION)')
    compile_.add_argument('--temp-location', default=os.environ.get('DATAFLOW_TEMP_LOCATION'),
                          help='Dataflow temp location (env DATAFLOW_TEMP_LOCATION)')
    defaults = ' '.join(f'{k}={v.cpu:g},{v.memory_gb:g}' for k, v in config_lib.DEFAULT_RESOURCES.items())
    compile_.add_argument('--resources', action='append', default=[], metavar='COMPONENT=CPU,MEMORY_GB',
                          help=f'container limits per component, e.g. Trainer=8,16 (default: {defaults})')
    compile_.add_argument('--schema-file', help='the curated schema as tasks see it (default: inside the image)')
    compile_.add_argument('--metadata-grpc', metavar='HOST:PORT',
                          help="open-source Kubeflow's ML Metadata service, e.g. metadata-grpc-service.kubeflow:8080: "
                          'the baseline, drift reference and Pusher then take only versions it records as pushed '
                          '(default: none, as on Vertex AI: the push destination alone)')
    compile_.add_argument('--output-dir', default=COMPILED_DIR, help='(default: %(default)s)')
    compile_.set_defaults(handler=compile_command)

    submit = commands.add_parser('submit', help='upload the compiled pipeline to KFP; optionally run and schedule it')
    submit.add_argument('--host', default=os.environ.get('KFP_HOST'), help='KFP API endpoint (env KFP_HOST)')
    submit.add_argument('--token', default=os.environ.get('KFP_TOKEN'), help='bearer token (env KFP_TOKEN)')
    submit.add_argument('--namespace', default=os.environ.get('KFP_NAMESPACE', 'kubeflow'))
    submit.add_argument('--package', default=os.path.join(COMPILED_DIR, 'chicago_taxi_pipeline.yaml'),
                        help='compiled KFP IR YAML (default: %(default)s)')
    submit.add_argument('--pipeline-name', default=config_lib.PIPELINE_NAME)
    submit.add_argument('--version', required=True, help='pipeline version name, e.g. the git commit')
    submit.add_argument('--experiment', default=config_lib.PIPELINE_NAME)
    submit.add_argument('--run', metavar='RUN_NAME', help='also start a run with this name')
    submit.add_argument('--param', action='append', default=[], metavar='KEY=VALUE',
                        help='a run parameter the spec declares, e.g. train_steps=5000')
    schedule = submit.add_mutually_exclusive_group()
    schedule.add_argument('--cron', help='create or replace a recurring run: KFP cron, seconds first ("0 0 3 * * *")')
    schedule.add_argument('--interval-seconds', type=int, help='create or replace a recurring run every N seconds')
    schedule.add_argument('--recurring-run', metavar='FILE',
                          help='reconcile the recurring run to the one FILE declares (kfp/recurring_run.yaml): '
                               'schedule, parameters and caching kept as code; CI passes it on every push')
    submit.add_argument('--schedule-name', default=f'{config_lib.PIPELINE_NAME}-continuous-training')
    submit.add_argument('--no-cache', action='store_true',
                        help='the run (and recurring run) re-executes every task: sent with the spec inline and '
                             'caching off, since KFP 2 has no per-run cache option (see docs/kubeflow.md)')
    submit.set_defaults(handler=submit_command)


def _steps_and_thresholds(parser: argparse.ArgumentParser) -> None:
    """Flags for the values a run may change; their defaults are PipelineConfig's."""
    thresholds = Thresholds()
    parser.add_argument('--train-epochs', type=float, default=config_lib.default('train_epochs'),
                        help='passes over the training split; the steps follow from its rows and the batch size '
                        '(default: %(default)s)')
    parser.add_argument('--train-steps', type=int, default=config_lib.default('train_steps'),
                        help='training steps, instead of --train-epochs; 0: from the epochs (default: %(default)s)')
    parser.add_argument('--eval-steps', type=int, default=config_lib.default('eval_steps'),
                        help='validation batches read at each check during training (default: %(default)s)')
    parser.add_argument('--max-eval-examples', type=int, default=config_lib.default('max_eval_examples'),
                        help='the Evaluator scores an evenly spaced sample of at most this many eval examples; 0: '
                        'all (default: %(default)s)')
    parser.add_argument('--min-auc', type=float, default=thresholds.min_auc,
                        help='AUC a model needs to be blessed (default: %(default)s)')
    parser.add_argument('--min-accuracy', type=float, default=thresholds.min_accuracy,
                        help='accuracy a model needs to be blessed (default: %(default)s)')
    parser.add_argument('--max-auc-drop', type=float, default=thresholds.max_auc_drop,
                        help='how far AUC may fall below the latest pushed model (default: %(default)s)')
    parser.add_argument('--drift-policy', choices=config_lib.DRIFT_POLICIES, default=config_lib.default('drift_policy'),
                        help="what drift from the serving model's training data does: warn (train, and mark the "
                        'model) or block (stop before training, exit 2) (default: %(default)s)')
    parser.add_argument('--tune', action='store_true', default=config_lib.default('tune'),
                        help='the Tuner searches the hyperparameters (KerasTuner, random search) and the Trainer '
                        'trains with the best; without it, runs train with the last tuning, else the defaults')
    parser.add_argument('--tuning-max-trials', type=int, default=config_lib.default('tuning_max_trials'),
                        help='tuning budget: at most this many trials (default: %(default)s)')
    parser.add_argument('--tuning-max-seconds', type=float, default=config_lib.default('tuning_max_seconds'),
                        help='tuning budget: no trial starts after this many seconds (default: %(default)s)')
    parser.add_argument('--tuning-trial-steps', type=int, default=config_lib.default('tuning_trial_steps'),
                        help='training steps of each tuning trial (default: %(default)s)')


def _run_settings(args) -> dict:
    return dict(train_epochs=args.train_epochs, train_steps=args.train_steps, eval_steps=args.eval_steps, drift_policy=args.drift_policy,
                max_eval_examples=args.max_eval_examples, tune=args.tune, tuning_max_trials=args.tuning_max_trials,
                tuning_max_seconds=args.tuning_max_seconds, tuning_trial_steps=args.tuning_trial_steps,
                thresholds=Thresholds(min_auc=args.min_auc, min_accuracy=args.min_accuracy,
                                      max_auc_drop=args.max_auc_drop))


def run_command(args) -> int:
    from pipeline import data
    trigger = _trigger(args)
    config = PipelineConfig.for_workspace(
        args.workspace, data_root=args.data_root, enable_cache=not args.no_cache,
        beam=config_lib.BeamSettings(direct_workers=args.beam_workers), **_run_settings(args))
    if args.data_root is None and not data.span_dirs(config.data_root):
        print(f'Prepared the TFX Chicago Taxi sample as {data.prepare_sample(config.data_root)}')
    # The data is checked while the pipeline's libraries load (before them: a fork is safe only then).
    checked = data.check_and_count_ahead(config.data_root)
    from components.anomalies_gate.gate import GATE_ERRORS
    from pipeline import local_runner
    from pipeline.workspace_lock import WorkspaceBusy
    print(f'Running pipeline {config.pipeline_name!r}: data {config.data_root}, workspace {args.workspace}')
    try:
        result = local_runner.run(config, trigger=trigger, wait_seconds=args.wait, pages=args.run_pages,
                                  checked=checked)
    except (data.DataError, WorkspaceBusy, *GATE_ERRORS):
        raise
    except Exception as e:  # a component failed; its own error says why
        raise PipelineFailed(f'the pipeline failed: {type(e).__name__}: {e}') from e
    if not result.succeeded:
        raise PipelineFailed('the pipeline did not complete: see the summary above')
    return 0


def _trigger(args) -> run_trigger.Trigger:
    import json
    try:
        detail = json.loads(args.trigger_detail)
    except ValueError as e:
        raise ValueError(f'--trigger-detail must be a JSON object: {e}') from None
    if not isinstance(detail, dict):
        raise ValueError('--trigger-detail must be a JSON object')
    return run_trigger.Trigger(args.trigger, detail)


def prepare_command(args) -> int:
    from pipeline import data
    print(f'Wrote {data.prepare_sample(args.data_root, rows=args.rows, span=args.span, seed=args.seed, drift=args.drift)}')
    return 0


def schema_draft_command(args) -> int:
    from pipeline import data, schema_review
    span_dir = data.check_data_root(args.data_root)
    differences = schema_review.write_draft(span_dir, args.output)
    print(f'Draft schema inferred from {span_dir} written to {args.output}')
    print('Differences from the curated schema (schemas/schema.pbtxt):')
    print('\n'.join(f'  {d}' for d in differences) if differences else '  none')
    return 0


def _resources(items) -> dict:
    resources = dict(config_lib.DEFAULT_RESOURCES)
    for item in items:
        component, _, limits = item.partition('=')
        try:
            cpu, memory = limits.split(',')
            resources[component] = config_lib.Resources(cpu=float(cpu), memory_gb=float(memory))
        except ValueError:
            raise ValueError(f'--resources takes COMPONENT=CPU,MEMORY_GB, got {item!r}') from None
    return resources


def compile_command(args) -> int:
    missing = [flag for flag, value in (('--image', args.image), ('--pipeline-root', args.pipeline_root),
                                        ('--data-root', args.data_root),
                                        ('--serving-model-dir', args.serving_model_dir)) if not value]
    if missing:
        raise ValueError(f'compile needs {", ".join(missing)} (or their environment variables)')
    config = PipelineConfig.for_kubeflow(
        args.image, args.pipeline_root, args.data_root, args.serving_model_dir, resources=_resources(args.resources),
        metadata_grpc=args.metadata_grpc,
        beam=config_lib.BeamSettings(runner=args.beam_runner, gcp_project=args.project, gcp_region=args.region,
                                     temp_location=args.temp_location),
        **_run_settings(args), **({'schema_file': args.schema_file} if args.schema_file else {}))
    from pipeline import kubeflow_compile
    yaml_path, json_path = kubeflow_compile.compile_pipeline(config, args.output_dir)
    tasks = kubeflow_compile.validate_compiled(yaml_path)
    parameters = ', '.join(kubeflow_compile.declared_parameters(yaml_path))
    print(f'Wrote {yaml_path} (KFP IR, {tasks} tasks, validated with the kfp SDK; run parameters: {parameters})')
    print(f'Wrote {json_path} (Vertex AI PipelineJob)')
    return 0


def submit_command(args) -> int:
    from pipeline import kubeflow_submit
    if not args.host:
        raise ValueError('submit needs --host (or KFP_HOST)')
    if not os.path.isfile(args.package):
        raise ValueError(f'no compiled pipeline at {args.package}; run `taxi-pipeline compile` first')
    schedule = declared = None
    if args.cron or args.interval_seconds:
        schedule = kubeflow_submit.Schedule(args.schedule_name, cron=args.cron, interval_seconds=args.interval_seconds)
    if args.recurring_run:
        declared = kubeflow_submit.load_recurring_run(args.recurring_run, args.package)
    # Checked and typed before connecting: a name the spec does not declare uploads nothing.
    params = kubeflow_submit.typed_parameters(args.package, kubeflow_submit.parse_params(args.param))
    client = kubeflow_submit.connect(args.host, token=args.token, namespace=args.namespace)
    kubeflow_submit.submit(client, args.package, args.pipeline_name, args.version, args.experiment,
                           run_name=args.run, params=params, schedule=schedule,
                           enable_caching=False if args.no_cache else None, declared=declared,
                           declared_path=args.recurring_run or '')
    return 0
