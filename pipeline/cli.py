"""`taxi-pipeline`: run the pipeline locally, prepare data, review the schema.

Exit codes: 0 success (including a model that was evaluated and not blessed:
the pipeline did its job), 1 a component failed, 2 bad input (data that fails
the checks or the curated schema).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def configure_logging(verbose: bool) -> None:
    """Progress lines and the summary, or everything TFX and TensorFlow say."""
    if verbose:
        logging.basicConfig(level=logging.INFO)
        return
    # Before TensorFlow loads: its C++ INFO/WARNING lines drown the progress.
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    warnings.simplefilter('ignore')
    # Libraries log through the root logger and absl's; show errors only.
    logging.basicConfig(level=logging.ERROR)
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.ERROR)
    from absl import logging as absl_logging
    absl_logging.get_absl_handler().setLevel(logging.ERROR)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='taxi-pipeline', description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)

    run = sub.add_parser('run', help='run the pipeline end to end (LocalDagRunner, SQLite MLMD, Beam DirectRunner)')
    run.add_argument('--workspace', default='workspace',
                     help='directory for pipeline outputs, metadata and pushed models (default: %(default)s)')
    run.add_argument('--data-root', help='directory of span-N/ CSV directories (default: <workspace>/data, '
                     'filled with the TFX taxi sample if empty)')
    run.add_argument('--train-steps', type=int, default=1000, help='training steps (default: %(default)s)')
    run.add_argument('--eval-steps', type=int, default=100, help='validation steps (default: %(default)s)')
    run.add_argument('--beam-workers', type=int, default=1,
                     help='Beam DirectRunner workers; more than 1 uses threads (default: %(default)s)')
    run.add_argument('--no-cache', action='store_true', help='re-execute every component')
    run.add_argument('--min-auc', type=float, help='absolute AUC a model needs to be blessed')
    run.add_argument('--max-auc-drop', type=float, help='how far AUC may fall below the latest pushed model')
    run.add_argument('--verbose', action='store_true', help='show TFX and TensorFlow logs')

    prepare = sub.add_parser('prepare-data', help='copy the TFX taxi sample into a span directory')
    prepare.add_argument('--data-root', default=os.path.join('workspace', 'data'))
    prepare.add_argument('--rows', type=int, help='keep only the first N rows')
    prepare.add_argument('--span', type=int, default=1)

    draft = sub.add_parser('schema-draft', help='infer a schema from data and show how it differs from the curated one')
    draft.add_argument('--data-root', default=os.path.join('workspace', 'data'))
    draft.add_argument('--output', default=os.path.join('workspace', 'schema_draft', 'schema.pbtxt'))
    compile_ = sub.add_parser('compile', help='compile for Kubeflow Pipelines (KFP IR YAML) and Vertex AI (PipelineJob JSON)')
    compile_.add_argument('--image', default=os.environ.get('PIPELINE_IMAGE'),
                          help='pipeline image the tasks run in (env PIPELINE_IMAGE)')
    compile_.add_argument('--pipeline-root', default=os.environ.get('PIPELINE_ROOT'),
                          help='artifact root in the cluster, e.g. gs://bucket/pipeline_root (env PIPELINE_ROOT)')
    compile_.add_argument('--data-root', default=os.environ.get('DATA_ROOT'),
                          help='span-N/ CSV directories in the cluster (env DATA_ROOT)')
    compile_.add_argument('--serving-model-dir', default=os.environ.get('SERVING_MODEL_DIR'),
                          help='push destination TF Serving watches (env SERVING_MODEL_DIR)')
    compile_.add_argument('--train-steps', type=int, default=1000)
    compile_.add_argument('--eval-steps', type=int, default=100)
    compile_.add_argument('--beam-runner', choices=['DirectRunner', 'DataflowRunner'], default='DirectRunner')
    compile_.add_argument('--project', default=os.environ.get('GCP_PROJECT'), help='Dataflow project (env GCP_PROJECT)')
    compile_.add_argument('--region', default=os.environ.get('GCP_REGION'), help='Dataflow region (env GCP_REGION)')
    compile_.add_argument('--temp-location', default=os.environ.get('DATAFLOW_TEMP_LOCATION'),
                          help='Dataflow temp location (env DATAFLOW_TEMP_LOCATION)')
    compile_.add_argument('--resources', action='append', default=[], metavar='COMPONENT=CPU,MEMORY_GB',
                          help='container limits per component, e.g. Trainer=8,16 (default: Transform=2,8 Trainer=4,8)')
    compile_.add_argument('--schema-file', help='the curated schema as tasks see it (default: inside the image)')
    compile_.add_argument('--output-dir', default=os.path.join('kfp', 'build'))

    submit = sub.add_parser('submit', help='upload the compiled pipeline to KFP; optionally run and schedule it')
    submit.add_argument('--host', default=os.environ.get('KFP_HOST'), help='KFP API endpoint (env KFP_HOST)')
    submit.add_argument('--token', default=os.environ.get('KFP_TOKEN'), help='bearer token (env KFP_TOKEN)')
    submit.add_argument('--namespace', default=os.environ.get('KFP_NAMESPACE', 'kubeflow'))
    submit.add_argument('--package', default=os.path.join('kfp', 'build', 'chicago_taxi_pipeline.yaml'),
                        help='compiled KFP IR YAML (default: %(default)s)')
    submit.add_argument('--pipeline-name', default='chicago-taxi')
    submit.add_argument('--version', required=True, help='pipeline version name, e.g. the git commit')
    submit.add_argument('--experiment', default='chicago-taxi')
    submit.add_argument('--run', metavar='RUN_NAME', help='also start a run with this name')
    submit.add_argument('--param', action='append', default=[], metavar='KEY=VALUE', help='run parameter')
    schedule = submit.add_mutually_exclusive_group()
    schedule.add_argument('--cron', help='create or replace a recurring run: KFP cron, seconds first ("0 0 3 * * *")')
    schedule.add_argument('--interval-seconds', type=int, help='create or replace a recurring run every N seconds')
    submit.add_argument('--schedule-name', default='chicago-taxi-continuous-training')
    return parser


def _submit(args) -> int:
    from pipeline import kfp_submit
    if not args.host:
        print('error: submit needs --host (or KFP_HOST)', file=sys.stderr)
        return EXIT_BAD_INPUT
    if not os.path.isfile(args.package):
        print(f'error: no compiled pipeline at {args.package}; run `taxi-pipeline compile` first', file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        params = dict(p.split('=', 1) for p in args.param)
    except ValueError:
        print(f'error: --param takes KEY=VALUE, got {args.param}', file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        schedule = None
        if args.cron or args.interval_seconds:
            schedule = kfp_submit.Schedule(args.schedule_name, cron=args.cron, interval_seconds=args.interval_seconds)
        client = kfp_submit.connect(args.host, token=args.token, namespace=args.namespace)
        kfp_submit.submit(client, args.package, args.pipeline_name, args.version, args.experiment,
                          run_name=args.run, params=params, schedule=schedule)
    except ValueError as e:
        print(f'error: {e}', file=sys.stderr)
        return EXIT_BAD_INPUT
    except kfp_submit.SubmitError as e:
        print(f'error: {e}', file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _compile(args) -> int:
    missing = [flag for flag, value in (('--image', args.image), ('--pipeline-root', args.pipeline_root),
                                        ('--data-root', args.data_root),
                                        ('--serving-model-dir', args.serving_model_dir)) if not value]
    if missing:
        print(f'error: compile needs {", ".join(missing)} (or their environment variables)', file=sys.stderr)
        return EXIT_BAD_INPUT
    from pipeline import kubeflow
    try:
        resources = dict(kubeflow.KubeflowSettings.default_resources())
        for item in args.resources:
            component, _, limits = item.partition('=')
            cpu, memory = limits.split(',')
            resources[component] = kubeflow.Resources(cpu=float(cpu), memory_gb=float(memory))
    except ValueError:
        print(f'error: --resources takes COMPONENT=CPU,MEMORY_GB, got {args.resources}', file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        settings = kubeflow.KubeflowSettings(
            image=args.image, pipeline_root=args.pipeline_root, data_root=args.data_root,
            serving_model_dir=args.serving_model_dir, train_steps=args.train_steps, eval_steps=args.eval_steps,
            beam_runner=args.beam_runner, gcp_project=args.project, gcp_region=args.region,
            dataflow_temp_location=args.temp_location, resources=resources,
            **({'schema_file': args.schema_file} if args.schema_file else {}))
    except ValueError as e:
        print(f'error: {e}', file=sys.stderr)
        return EXIT_BAD_INPUT
    yaml_path, json_path = kubeflow.compile_pipeline(settings, args.output_dir)
    tasks = kubeflow.validate_compiled(yaml_path)
    print(f'Wrote {yaml_path} (KFP IR, {tasks} tasks, validated with the kfp SDK)')
    print(f'Wrote {json_path} (Vertex AI PipelineJob)')
    return EXIT_OK


def _run(args) -> int:
    from pipeline import data, local_runner
    from pipeline.config import PipelineConfig, Thresholds
    from components.anomalies_gate import DataAnomaliesError

    threshold_overrides = {k: v for k, v in (('min_auc', args.min_auc), ('max_auc_drop', args.max_auc_drop))
                           if v is not None}
    config = PipelineConfig.for_workspace(
        args.workspace, data_root=args.data_root, train_steps=args.train_steps, eval_steps=args.eval_steps,
        beam_workers=args.beam_workers, enable_cache=not args.no_cache,
        thresholds=Thresholds(**threshold_overrides))
    if args.data_root is None and not data.span_dirs(config.data_root):
        path = data.prepare_sample(config.data_root)
        print(f'Prepared the TFX Chicago Taxi sample as {path}')
    print(f'Running pipeline {config.pipeline_name!r}: data {config.data_root}, workspace {args.workspace}')
    try:
        result = local_runner.run(config)
    except (data.DataError, DataAnomaliesError) as e:
        print(f'error: {e}', file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as e:  # a component failed; its own error says why
        print(f'error: the pipeline failed: {type(e).__name__}: {e}', file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if result.succeeded else EXIT_FAILED


def _prepare(args) -> int:
    from pipeline import data
    path = data.prepare_sample(args.data_root, rows=args.rows, span=args.span)
    print(f'Wrote {path}')
    return EXIT_OK


def _schema_draft(args) -> int:
    from pipeline import data, schema_review
    try:
        span_dir = data.check_data_root(args.data_root)
    except data.DataError as e:
        print(f'error: {e}', file=sys.stderr)
        return EXIT_BAD_INPUT
    differences = schema_review.write_draft(span_dir, args.output)
    print(f'Draft schema inferred from {span_dir} written to {args.output}')
    print('Differences from the curated schema (schemas/schema.pbtxt):')
    print('\n'.join(f'  {d}' for d in differences) if differences else '  none')
    return EXIT_OK


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(getattr(args, 'verbose', False))
    handler = {'run': _run, 'prepare-data': _prepare, 'schema-draft': _schema_draft,
               'compile': _compile, 'submit': _submit}[args.command]
    return handler(args)


if __name__ == '__main__':
    sys.exit(main())
