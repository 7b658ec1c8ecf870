"""`taxi-pipeline`: run the pipeline locally, serve and query its models, compile for Kubeflow.

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
    import serving  # the serving contract: names and ports only, no TensorFlow
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

    serve = sub.add_parser('serve', help="serve pushed models with TF Serving's REST and gRPC APIs (embedded server)")
    source = serve.add_mutually_exclusive_group()
    source.add_argument('--model-base-path', default=os.path.join('workspace', 'serving_model', serving.MODEL_NAME),
                        help="the Pusher's versioned directory (default: %(default)s)")
    source.add_argument('--model-config-file', help='a TF Serving ModelServerConfig (models, policies, labels), '
                        're-read when it changes, e.g. serving/config/models.config with a local base_path')
    serve.add_argument('--model-name', default=serving.MODEL_NAME)
    serve.add_argument('--version-policy', default='latest:1', help='latest:N, all, or specific:V1,V2 (default: %(default)s)')
    serve.add_argument('--host', default='127.0.0.1', help='interface to bind (default: loopback only)')
    serve.add_argument('--rest-port', type=int, default=serving.REST_PORT)
    serve.add_argument('--grpc-port', type=int, default=serving.GRPC_PORT)
    serve.add_argument('--poll-seconds', type=float, default=1.0, help='how often the base path is checked')
    serve.add_argument('--config-poll-seconds', type=float, default=10.0, help='how often the config file is checked')
    serve.add_argument('--enable-batching', action='store_true', help='server-side batching of concurrent requests')
    serve.add_argument('--batching-parameters-file', default=os.path.join('serving', 'config', 'batching.config'))
    serve.add_argument('--request-log-dir', help='write served examples here as TFRecords of tf.Example (for TFDV)')
    serve.add_argument('--no-warmup', action='store_true', help='skip replaying assets.extra warm-up requests')
    serve.add_argument('--verbose', action='store_true')

    predict = sub.add_parser('predict', help='send the rows of a CSV file to a model server and print predictions')
    predict.add_argument('csv', help='CSV with a header of raw columns (extra columns, like tips, are ignored)')
    predict.add_argument('--server', default='localhost', help='model server host (default: %(default)s)')
    predict.add_argument('--protocol', choices=['rest', 'grpc'], default='rest')
    predict.add_argument('--port', type=int, help=f'default: {serving.REST_PORT} for REST, {serving.GRPC_PORT} for gRPC')
    predict.add_argument('--model-name', default=serving.MODEL_NAME)
    target = predict.add_mutually_exclusive_group()
    target.add_argument('--version', type=int, help='a specific model version')
    target.add_argument('--label', help='a version label, e.g. stable or canary')
    predict.add_argument('--signature', choices=['serving_raw', 'serving_default'], default='serving_raw',
                         help='raw features or serialized tf.Examples (default: %(default)s)')
    predict.add_argument('--batch-size', type=int, default=100, help='rows per request (default: %(default)s)')
    predict.add_argument('--limit', type=int, help='send only the first N rows')

    from serving import labels as labels_tool  # protobuf only, no TensorFlow
    sub.add_parser('serving-labels', parents=[labels_tool.parser()], add_help=False,
                   help='point the stable/canary labels of a TF Serving model config at versions '
                   '(promote a canary, roll back)')
    return parser


def _serve(args) -> int:
    from serving import server as server_lib
    from serving.batching import BatchingOptions
    from serving.manager import VersionPolicy
    try:
        options = dict(host=args.host, rest_port=args.rest_port, grpc_port=args.grpc_port,
                       poll_seconds=args.poll_seconds, config_poll_seconds=args.config_poll_seconds,
                       request_log_dir=args.request_log_dir, warm_up=not args.no_warmup,
                       batching=BatchingOptions.from_file(args.batching_parameters_file) if args.enable_batching
                       else None)
        if args.model_config_file:
            settings = server_lib.ServerSettings.from_config_file(args.model_config_file, **options)
        else:
            if not os.path.isdir(args.model_base_path):
                raise ValueError(f'no model directory at {args.model_base_path}: run the pipeline first '
                                 '(`make run`), or pass --model-base-path')
            settings = server_lib.ServerSettings.for_model(
                os.path.abspath(args.model_base_path), args.model_name, VersionPolicy.parse(args.version_policy),
                **options)
    except (OSError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return EXIT_BAD_INPUT
    # Loads, unloads and failed versions are news worth a line on the console.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(message)s'))
    serving_log = logging.getLogger('serving')
    serving_log.addHandler(handler)
    serving_log.setLevel(logging.INFO)
    serving_log.propagate = False
    return server_lib.serve_until_interrupted(settings, emit_line=lambda line: print(line, flush=True))


def _predict(args) -> int:
    import csv
    from serving import client as client_lib
    if args.batch_size < 1:
        print('error: --batch-size must be at least 1', file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        with open(args.csv, newline='') as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        print(f'error: cannot read {args.csv}: {e}', file=sys.stderr)
        return EXIT_BAD_INPUT
    rows = rows[:args.limit] if args.limit is not None else rows
    if not rows:
        print(f'error: {args.csv} has no data rows', file=sys.stderr)
        return EXIT_BAD_INPUT
    client = client_lib.connect(args.protocol, args.server, args.port, model_name=args.model_name)
    try:
        for start in range(0, len(rows), args.batch_size):
            batch = rows[start:start + args.batch_size]
            try:
                prediction = client.predict(batch, version=args.version, label=args.label, signature=args.signature)
            except ValueError as e:  # a value the column's type cannot hold
                print(f'error: {args.csv}, rows {start + 1}-{start + len(batch)}: {e}', file=sys.stderr)
                return EXIT_BAD_INPUT
            version = prediction.model_version if prediction.model_version is not None else ''
            if start == 0:
                print('row,probability,big_tipper,model_version')
            for i, probability in enumerate(prediction.probabilities, start=start + 1):
                print(f'{i},{probability:.6f},{int(probability >= 0.5)},{version}')
    except client_lib.ServingClientError as e:
        print(f'error: {e}', file=sys.stderr)
        return EXIT_FAILED
    finally:
        client.close()
    return EXIT_OK


def _serving_labels(args) -> int:
    from serving import labels
    return labels.run(args)


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
               'compile': _compile, 'submit': _submit, 'serve': _serve, 'predict': _predict,
               'serving-labels': _serving_labels}[args.command]
    return handler(args)


if __name__ == '__main__':
    sys.exit(main())
