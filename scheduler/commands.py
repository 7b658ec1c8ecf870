"""`schedule`: continuous training on this machine (a long-running scheduler, or one check)."""

from __future__ import annotations

import argparse
import os

from foundation.workspace import Workspace


def register(commands: argparse._SubParsersAction, workspace: Workspace) -> None:
    schedule = commands.add_parser(
        'schedule', help='retrain on a cron schedule, on new spans and on monitoring alerts; each run records why')
    schedule.add_argument('--workspace', default=workspace.root, help='(default: %(default)s)')
    schedule.add_argument('--data-root', help='span-N/ directories (default: <workspace>/data)')
    schedule.add_argument('--cron', help="a crontab expression in UTC, e.g. '0 3 * * *' (a run every night)")
    schedule.add_argument('--tune-cron', help="a crontab expression in UTC for runs that also tune the "
                          "hyperparameters (`run --tune`; on Kubeflow the tune parameter), e.g. '0 4 * * 0' (Sundays); "
                          'other runs train with the last tuning')
    schedule.add_argument('--no-span-trigger', action='store_true', help='do not run when a new span arrives')
    schedule.add_argument('--no-alert-trigger', action='store_true', help='do not run on monitoring alerts')
    schedule.add_argument('--cooldown', default='6h', help='after a run, alerts wait this long before the next '
                          'one: an alert storm is one retrain (default: %(default)s)')
    schedule.add_argument('--poll', default='60s', help='how often triggers are checked (default: %(default)s)')
    schedule.add_argument('--feedback-span', action='store_true',
                          help='on alerts, write the labelled serving traffic as the next span and retrain on it; '
                          'the new model is pushed only if it beats the serving one there')
    schedule.add_argument('--request-log-dir', help='(default: <workspace>/request_logs)')
    schedule.add_argument('--feedback-dir', help='(default: <workspace>/feedback)')
    schedule.add_argument('--once', action='store_true', help='check the triggers once, run if one is due, exit '
                          '(for cron or CI); exit code: the run\'s, 0 if nothing was due')
    schedule.add_argument('--run-arg', action='append', default=[], metavar='ARG',
                          help='passed to every `taxi-pipeline run`, e.g. --run-arg=--train-steps=200')
    kubeflow = schedule.add_argument_group(
        'on Kubeflow', 'start runs of the newest uploaded pipeline version instead of running here; triggers read '
        "the cluster's ML Metadata (the monitor CronJob records there) and a gs:// data root")
    kubeflow.add_argument('--kubeflow-host', default=os.environ.get('KFP_HOST'), help='KFP API endpoint')
    kubeflow.add_argument('--kubeflow-token', default=os.environ.get('KFP_TOKEN'), help='bearer token (env KFP_TOKEN)')
    kubeflow.add_argument('--kubeflow-namespace', default=os.environ.get('KFP_NAMESPACE', 'kubeflow'))
    kubeflow.add_argument('--package', default=os.path.join('kfp', 'chicago_taxi_pipeline.yaml'),
                          help='the spec CI uploads; run parameters are checked against it (default: %(default)s)')
    kubeflow.add_argument('--experiment', default='continuous-training', help='(default: %(default)s)')
    kubeflow.add_argument('--param', action='append', default=[], metavar='KEY=VALUE',
                          help='a run parameter the spec declares, e.g. data_root=gs://bucket/data')
    kubeflow.add_argument('--metadata-grpc', metavar='HOST:PORT',
                          help="the cluster's ML Metadata service, e.g. metadata-grpc-service.kubeflow:8080")
    kubeflow.add_argument('--kubeflow-no-cache', action='store_true',
                          help='triggered runs re-execute every task (the newest version\'s spec, sent with caching '
                               'off): else a retrain on alerts over an unchanged span reuses every cached task')
    schedule.set_defaults(handler=schedule_command)

    demo = commands.add_parser('demo', help='play the continuous-training loop on this machine in a few minutes: '
                               'train, serve, clean then drifted traffic with feedback, monitor, retrain')
    demo.add_argument('--workspace', default=os.path.join(workspace.root, 'demo'),
                      help='an empty or new directory (default: %(default)s)')
    demo.add_argument('--train-steps', type=int, default=300)
    demo.set_defaults(handler=demo_command)


def schedule_command(args) -> int:
    from foundation.durations import parse_duration
    from scheduler import service, triggers
    for flag, expression in (('--cron', args.cron), ('--tune-cron', args.tune_cron)):
        if expression:
            from apscheduler.triggers.cron import CronTrigger
            try:
                CronTrigger.from_crontab(expression)
            except ValueError as e:
                raise ValueError(f'{flag} {expression!r} is not a crontab expression (minute hour day month '
                                 f'weekday): {e}') from None
    layout = Workspace(args.workspace).absolute()
    kubeflow = None
    if args.kubeflow_host:
        from pipeline.kubeflow_submit import parse_params
        from pipeline.config import PIPELINE_NAME
        if args.feedback_span:
            raise ValueError('--feedback-span writes a span on this machine; with --kubeflow-host, export feedback to '
                             'the cluster\'s data root with `taxi-pipeline feedback-span --data-root` instead')
        if not os.path.isfile(args.package):
            raise ValueError(f'no compiled pipeline at {args.package}; run `taxi-pipeline compile` first')
        kubeflow = service.KubeflowTarget(args.kubeflow_host, args.package, PIPELINE_NAME, args.experiment,
                                          args.kubeflow_token, args.kubeflow_namespace,
                                          tuple(parse_params(args.param).items()), args.metadata_grpc,
                                          enable_caching=not args.kubeflow_no_cache)
    data_root = args.data_root or layout.data_root
    settings = service.Settings(
        workspace=layout.root, data_root=data_root if '://' in data_root else os.path.abspath(data_root),
        policy=triggers.Policy(watch_spans=not args.no_span_trigger, on_alerts=not args.no_alert_trigger,
                               cooldown_seconds=parse_duration(args.cooldown, '--cooldown'),
                               run_context_type='system.PipelineRun' if kubeflow else 'pipeline_run'),
        kubeflow=kubeflow,
        cron=args.cron, tune_cron=args.tune_cron,
        poll_seconds=parse_duration(args.poll, '--poll'), feedback_span=args.feedback_span,
        request_log_dir=args.request_log_dir or layout.request_log_dir,
        feedback_dir=args.feedback_dir or layout.feedback_dir, run_args=tuple(args.run_arg))
    scheduler = service.Scheduler(settings, emit_line=lambda line: print(line, flush=True))
    if args.once:
        outcome = scheduler.check()
        if outcome is None:
            print('Nothing due.')
            return 0
        return outcome.exit_code
    return scheduler.serve_forever()



def demo_command(args) -> int:
    from scheduler import demo
    demo.play(args.workspace, emit_line=lambda line: print(line, flush=True), train_steps=args.train_steps)
    return 0
