"""`serve`, `serving-labels` and `serving-tokens`: the model server, TF Serving's
version labels, and the bearer tokens the server takes (serving/access.py).

Each command's parser and handler; `cli.main` only dispatches. Handlers raise
ValueError for bad input (exit 2) and return 0 or 1 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os

from serving import (CANARY_LABEL, FEEDBACK_PATH, GRPC_PORT, MAX_DECODED_REQUEST_BYTES, MAX_REQUEST_ROWS, REST_PORT,
                     STABLE_LABEL)
from serving.traffic import CALLER_HEADER, TRAFFIC_FILE, read_split


def register(commands: argparse._SubParsersAction, default_model_base_path: str) -> None:
    serve = commands.add_parser('serve', help="serve pushed models with TF Serving's REST and gRPC APIs "
                                '(embedded server), or front a TF Serving as a gateway (--upstream)')
    source = serve.add_mutually_exclusive_group()
    # No argparse default: with --upstream, only a path given explicitly is read.
    source.add_argument('--model-base-path', help=f"the Pusher's versioned directory (default: "
                        f'{default_model_base_path}); with --upstream, only where the versions\' missing-value '
                        'markers are read (no default)')
    source.add_argument('--model-config-file', help='a TF Serving ModelServerConfig (models, policies, labels), '
                        're-read when it changes, e.g. serving/config/models.config with a local base_path')
    serve.add_argument('--upstream', metavar='HOST:PORT',
                       help="gateway mode: forward every request to TF Serving's gRPC API at HOST:PORT, adding "
                       'request ids, the request log, metrics and feedback; TF Serving loads the models')
    serve.add_argument('--model-name', help="the name clients address (default: the base path's last "
                       'directory, as the Pusher lays it out)')
    serve.add_argument('--version-policy', default='latest:1',
                       help='latest:N, all, or specific:V1,V2 (default: %(default)s)')
    serve.add_argument('--host', default='127.0.0.1', help='interface to bind (default: loopback only; any other '
                       'needs --auth-tokens or --no-auth)')
    serve.add_argument('--auth-tokens', metavar='FILE', help='require bearer tokens (roles predict, explain, feedback, '
                       'admin) from this file, written by `serving-tokens add` and re-read when it changes; model '
                       'status and metrics stay open for probes and Prometheus')
    serve.add_argument('--no-auth', action='store_true', help='serve a non-loopback --host without tokens: only '
                       'where the network itself restricts who can connect')
    serve.add_argument('--rest-port', type=int, default=REST_PORT)
    serve.add_argument('--grpc-port', type=int, default=GRPC_PORT)
    serve.add_argument('--poll-seconds', type=float, default=1.0,
                       help='how often the base path is checked; 0: once, at start (as TF Serving\'s '
                            '--file_system_poll_wait_seconds)')
    serve.add_argument('--config-poll-seconds', type=float, default=10.0,
                       help='how often the config file is checked; 0: once, at start (as TF Serving\'s '
                            '--model_config_file_poll_wait_seconds)')
    serve.add_argument('--enable-batching', action='store_true', help='server-side batching of concurrent requests')
    serve.add_argument('--batching-parameters-file', default=os.path.join('serving', 'config', 'batching.config'))
    serve.add_argument('--request-log-dir', help='write served examples here as TFRecords of tf.Example (for TFDV)')
    serve.add_argument('--workers', type=int, default=1,
                       help='with --upstream: gateway processes sharing the ports (SO_REUSEPORT), to use more than '
                            'one core (default 1)')
    serve.add_argument('--worker-of', help=argparse.SUPPRESS)
    serve.add_argument('--drain-seconds', type=float, default=30.0,
                       help='on SIGTERM, how long requests in flight may take to finish before the server exits '
                            "(the Deployment's terminationGracePeriodSeconds less its preStop delay; default 30)")
    serve.add_argument('--request-log-overflow', choices=('block', 'shed'), default='block',
                       help='when the log falls behind: block (requests wait, then get UNAVAILABLE: nothing '
                            'answered goes unlogged; default) or shed (answer, with X-Request-Logged: false)')
    serve.add_argument('--feedback-dir', help=f'accept ground truth at POST {FEEDBACK_PATH} and store it here '
                       '(append-only; local or gs://)')
    serve.add_argument('--traffic-config', metavar='FILE',
                       help=f'canary split of unaddressed requests (JSON, e.g. serving/config/{TRAFFIC_FILE}: '
                       '{"models": {"chicago-taxi": {"canary_percent": 10}}}), re-read when it changes; requests '
                       f'naming a version or label are not split; {CALLER_HEADER} keeps a caller on one side')
    serve.add_argument('--max-request-rows', type=int, default=MAX_REQUEST_ROWS,
                       help='refuse requests of more examples (413 / RESOURCE_EXHAUSTED; default %(default)s)')
    serve.add_argument('--max-decoded-request-bytes', type=int, default=MAX_DECODED_REQUEST_BYTES,
                       help='refuse requests that decode to more bytes (default %(default)s)')
    serve.add_argument('--rate-limit', metavar='PER_SECOND', help='per caller (token, else client address): at '
                       'most this many requests a second on average, over it 429 with Retry-After / '
                       'RESOURCE_EXHAUSTED; a token\'s own "rate_limit" in the tokens file overrides it (default: '
                       'no limit; model status and metrics are never limited)')
    serve.add_argument('--rate-burst', type=float, metavar='N',
                       help='with --rate-limit: requests a caller may make at once (default: one second\'s worth)')
    serve.add_argument('--no-warmup', action='store_true', help='skip replaying assets.extra warm-up requests')
    serve.add_argument('--enable-signature-method-name-check', action='store_true',
                       help="classify/regress only on signatures whose method_name says so (as TF Serving's "
                            '--enable_signature_method_name_check; off by default there too)')
    serve.add_argument('--verbose', action='store_true')
    serve.set_defaults(handler=serve_command, default_model_base_path=default_model_base_path)

    labels = commands.add_parser(
        'serving-labels', help=f'point the {STABLE_LABEL}/{CANARY_LABEL} labels of a TF Serving model config '
        'at versions (promote a canary, roll back)')
    labels.add_argument('--config', required=True,
                        help='ModelServerConfig text proto, e.g. serving/config/models.config')
    labels.add_argument('--stable', type=int, required=True, help=f'version for the {STABLE_LABEL} label')
    labels.add_argument('--canary', type=int, help=f'version for the {CANARY_LABEL} label (omit to remove it)')
    labels.add_argument('--model-name', help="the model whose labels move (default: the config's only model)")
    labels.add_argument('--direct', action='store_true',
                        help='write the final state in one step; only for a config no server has loaded yet')
    labels.set_defaults(handler=labels_command)
    _register_tokens(commands)


def _register_tokens(commands: argparse._SubParsersAction) -> None:
    tokens = commands.add_parser('serving-tokens', help='add, revoke and list the bearer tokens `serve --auth-tokens` '
                                 'takes (only their SHA-256 is stored)')
    actions = tokens.add_subparsers(dest='action', required=True)
    add = actions.add_parser('add', help='create a token, store its hash, print it once')
    add.add_argument('--roles', required=True, help='comma-separated: predict, explain, feedback, admin')
    add.add_argument('--rate-limit', metavar='PER_SECOND', help='this token\'s own rate limit (requests a second), '
                     'or "unlimited"; default: the server\'s --rate-limit')
    add.add_argument('--rate-burst', type=float, metavar='N', help='with --rate-limit: requests at once (default: '
                     'one second\'s worth)')
    revoke = actions.add_parser('revoke', help='remove a token: servers refuse it from their next request on')
    listing = actions.add_parser('list', help="each token's name, roles and creation time (never a token or hash)")
    for parser, handler in ((add, tokens_add_command), (revoke, tokens_revoke_command), (listing, tokens_list_command)):
        parser.add_argument('--file', required=True, help='the tokens file, e.g. tokens.json (created by add)')
        if parser is not listing:
            parser.add_argument('--name', required=True, help='who the token is for, e.g. ci-bot')
        parser.set_defaults(handler=handler)


def serve_command(args) -> int:
    from serving.access import check_exposure, read_tokens
    check_exposure(args.host, args.auth_tokens, args.no_auth)
    if args.auth_tokens:
        read_tokens(args.auth_tokens)  # a bad file stops the command here, before anything loads or binds
    if args.traffic_config:
        read_split(args.traffic_config)  # likewise a malformed traffic file (ValueError: exit 2)
    if args.upstream:
        return _serve_gateway(args)
    args.model_base_path = args.model_base_path or args.default_model_base_path
    from serving import server as server_lib
    from serving.batching import BatchingOptions
    from serving.manager import VersionPolicy
    options = dict(host=args.host, rest_port=args.rest_port, grpc_port=args.grpc_port,
                   auth_tokens_file=args.auth_tokens, poll_seconds=args.poll_seconds,
                   config_poll_seconds=args.config_poll_seconds,
                   request_log_dir=args.request_log_dir, request_log_overflow=args.request_log_overflow,
                   drain_seconds=args.drain_seconds,
                   feedback_dir=args.feedback_dir, warm_up=not args.no_warmup,
                   batching=BatchingOptions.from_file(args.batching_parameters_file) if args.enable_batching
                   else None, traffic_config_file=args.traffic_config,
                   signature_method_name_check=args.enable_signature_method_name_check,
                   limits=_limits(args), rate_limit=_rate_limit(args))
    if args.model_config_file:
        settings = server_lib.ServerSettings.from_config_file(args.model_config_file, **options)
    else:
        if not os.path.isdir(args.model_base_path):
            raise ValueError(f'no model directory at {args.model_base_path}: run the pipeline first '
                             '(`make run`), or pass --model-base-path')
        base_path = os.path.abspath(args.model_base_path)
        settings = server_lib.ServerSettings.for_model(
            base_path, args.model_name or os.path.basename(base_path), VersionPolicy.parse(args.version_policy),
            **options)
    _log_to_console()
    return server_lib.serve_until_interrupted(settings, emit_line=lambda line: print(line, flush=True))


def _serve_gateway(args) -> int:
    """`serve --upstream`: TF Serving loads and runs the models; this process fronts it, with
    `--workers` processes sharing its ports (serving/workers.py)."""
    if args.workers < 1:
        raise ValueError('--workers must be at least 1')
    if args.workers > 1 or args.worker_of:
        from serving import workers  # before prometheus_client is imported: it picks its mode then
        if args.worker_of:
            workers.die_with_parent()
        workers.share_metrics(args.worker_of)
    from serving import gateway
    from serving.upstream import parse_address
    upstream = parse_address(args.upstream)
    # Flags that configure loading models from disk would silently do nothing.
    ignored = [flag for flag, given in (('--model-config-file', args.model_config_file),
                                        ('--version-policy', args.version_policy != 'latest:1'),
                                        ('--enable-batching', args.enable_batching),
                                        ('--no-warmup', args.no_warmup),
                                        ('--enable-signature-method-name-check',
                                         args.enable_signature_method_name_check)) if given]
    if ignored:
        raise ValueError(f'{", ".join(ignored)} cannot be combined with --upstream: TF Serving at {upstream} loads '
                         'the models; set its own flags (--model_config_file, --enable_batching, ...) instead')
    markers = {}
    if args.model_base_path:
        base_path = args.model_base_path if '://' in args.model_base_path else os.path.abspath(args.model_base_path)
        markers = {args.model_name or os.path.basename(os.path.normpath(base_path)): base_path}
    settings = gateway.GatewaySettings(
        upstream=upstream, host=args.host, auth_tokens_file=args.auth_tokens, rest_port=args.rest_port,
        grpc_port=args.grpc_port, request_log_dir=args.request_log_dir, feedback_dir=args.feedback_dir,
        request_log_overflow=args.request_log_overflow, drain_seconds=args.drain_seconds,
        marker_paths=markers, limits=_limits(args), rate_limit=_rate_limit(args),
        traffic_config_file=args.traffic_config, reuse_port=args.workers > 1 or bool(args.worker_of))
    _log_to_console()
    if args.worker_of:  # one of the workers a gateway started (serving/workers.py)
        from serving import workers
        return gateway.serve_until_interrupted(settings, emit_line=workers.say)
    if args.workers > 1:
        from serving import workers
        return workers.serve(settings, args.workers, emit_line=lambda line: print(line, flush=True))
    return gateway.serve_until_interrupted(settings, emit_line=lambda line: print(line, flush=True))


def _limits(args):
    from serving.limits import RequestLimits
    if args.max_request_rows < 1 or args.max_decoded_request_bytes < 1:
        raise ValueError('--max-request-rows and --max-decoded-request-bytes must be positive')
    return RequestLimits(args.max_request_rows, args.max_decoded_request_bytes)


def _rate_limit(args, unlimited_allowed: bool = False):
    """--rate-limit and --rate-burst as a RateLimit (None: not given); ValueError naming the flags."""
    from serving.access import UNLIMITED
    from serving.rate_limit import parse_limit
    if args.rate_limit is None:
        if args.rate_burst is not None:
            raise ValueError('--rate-burst needs --rate-limit (the requests per second it refills at)')
        return None
    if unlimited_allowed and args.rate_limit == UNLIMITED:
        if args.rate_burst is not None:
            raise ValueError(f'--rate-burst makes no sense with --rate-limit {UNLIMITED}')
        return UNLIMITED
    return parse_limit(args.rate_limit, args.rate_burst)


def _log_to_console() -> None:
    # Loads, unloads, failed versions and unreadable markers are news worth a line on the console.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(message)s'))
    serving_log = logging.getLogger('serving')
    serving_log.addHandler(handler)
    serving_log.setLevel(logging.INFO)
    serving_log.propagate = False


def labels_command(args) -> int:
    from serving import labels
    pending = labels.set_labels(args.config, args.stable, args.canary, args.model_name, staged=not args.direct)
    current = labels.read_labels(args.config, args.model_name)
    name = labels.model_name_in(args.config, args.model_name)
    if pending:
        versions = ', '.join(map(str, sorted(pending)))
        print(f'staged: {args.config} now also loads version(s) {versions}; labels unchanged.\n'
              f'TF Serving moves a label only to a loaded version. Once every replica lists {versions} '
              f'as AVAILABLE (GET /v1/models/{name}), run the same command again.')
    else:
        print(f'{name}: ' + ', '.join(f'{k}={v}' for k, v in sorted(current.items())))
    return 0


def tokens_add_command(args) -> int:
    import sys
    from serving import access
    roles = access.parse_roles(args.roles)
    token = access.add_token(args.file, args.name, roles, _rate_limit(args, unlimited_allowed=True))
    roles = ', '.join(r for r in access.ROLES if r in roles)
    # The token alone on stdout (TOKEN=$(taxi-pipeline serving-tokens add ...)); the note on stderr.
    print(token, flush=True)
    print(f'Token for {args.name!r} (roles: {roles}) added to {args.file}. It is not stored (only its SHA-256 '
          'is) and cannot be shown again: hand it over now; if it is lost, revoke it and add another.',
          file=sys.stderr)
    return 0


def tokens_revoke_command(args) -> int:
    from serving import access
    access.revoke_token(args.file, args.name)
    print(f'Revoked {args.name!r} in {args.file}: servers reading this file refuse it from their next request on '
          '(in Kubernetes, once the Secret is updated and the kubelet has refreshed the mount).')
    return 0


def tokens_list_command(args) -> int:
    from serving import access
    tokens = access.list_tokens(args.file)
    if not tokens:
        print(f'{args.file} holds no tokens')
        return 0
    width = max(len('name'), *(len(t.name) for t in tokens))
    # The rate-limit column only when a token has its own limit: otherwise every row would say the default.
    limits = [t.describe_limit() for t in tokens] if any(t.rate_limit is not None for t in tokens) else None
    limit_width = max(len('rate limit'), *map(len, limits)) if limits else 0
    limit_header = f'{"rate limit":<{limit_width}}  ' if limits else ''
    print(f'{"name":<{width}}  {"roles":<33}  {limit_header}created')
    for i, t in enumerate(tokens):
        limit = f'{limits[i]:<{limit_width}}  ' if limits else ''
        print(f'{t.name:<{width}}  {t.describe_roles():<33}  {limit}{t.created or "-"}')
    return 0
