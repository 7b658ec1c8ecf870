"""`lineage`, `runs`, `model-card`: what made a version, how runs differ, the card a reviewer reads.

    taxi-pipeline lineage VERSION [--json] [--html FILE]
    taxi-pipeline runs [--json] [--html FILE]
    taxi-pipeline runs compare A B [--json] [--html FILE]
    taxi-pipeline model-card VERSION [--output FILE]

All read ML Metadata only (the local SQLite store, opened read-only, or a
cluster's metadata gRPC service) and write nothing but the pages asked for.
Pages go to the reports directory by default, under the names the other
reports link to. Handlers raise ValueError for unknown versions or runs (exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from foundation.workspace import Workspace

from foundation.atomic_file import write_atomically
from reports import page as reports_page
from reports.formatting import json_ready


def register(commands: argparse._SubParsersAction, workspace: Workspace) -> None:
    default_model_base_path = workspace.absolute().model_base_path
    common = _common_options(workspace)
    versioned = argparse.ArgumentParser(add_help=False, parents=[common])
    versioned.add_argument('--model-base-path', default=default_model_base_path,
                           help="the Pusher's push destination (default: %(default)s)")

    lineage = commands.add_parser('lineage', parents=[versioned],
                                  help='why a version is serving and what made it: stage history, approvals, run, '
                                  'code, data, schema, training, evaluation, live metrics')
    lineage.add_argument('version', type=int)
    lineage.add_argument('--html', nargs='?', const='', metavar='FILE',
                         help='also write the page with the drawn lineage graph (default file: '
                         '<reports-dir>/lineage-<version>.html)')
    lineage.set_defaults(handler=lineage_command)

    card = commands.add_parser('model-card', parents=[versioned], help="a version's model card (HTML)")
    card.add_argument('version', type=int)
    card.add_argument('--output', help='default: <reports-dir>/model-card-<version>.html')
    card.add_argument('--template', help='the card\'s prose (intended use, owners, caveats) (default: the '
                      'repository\'s provenance/model_card.yaml)')
    card.set_defaults(handler=model_card_command)

    runs = commands.add_parser('runs', parents=[common], help='every pipeline run: when, why, parameters, data, '
                               'duration, outcome, metrics; `runs compare A B` for what differed')
    runs.add_argument('--html', nargs='?', const='', metavar='FILE', help='also write the page (default file: '
                      '<reports-dir>/runs.html)')
    verbs = runs.add_subparsers(dest='verb')
    # The same options again after `compare`, without defaults: a subcommand's defaults would overwrite what
    # was given before it (`runs --metadata-grpc H:P compare 1 2`).
    compare = verbs.add_parser('compare', parents=[_common_options(workspace, argparse.SUPPRESS)],
                               help='what differed between two runs: parameters, code, data statistics, '
                               'metrics per slice')
    compare.add_argument('a', help='a run: its number in `runs` (negative counts from the newest), name, or prefix')
    compare.add_argument('b')
    compare.add_argument('--html', nargs='?', const='', default=argparse.SUPPRESS, metavar='FILE',
                         help='also write the page (default file: <reports-dir>/compare-<a>-<b>.html)')
    runs.set_defaults(handler=runs_command)


def _common_options(workspace: Workspace, suppress=None) -> argparse.ArgumentParser:
    """Where to read and write; `suppress` (argparse.SUPPRESS) leaves out the defaults."""
    def default(value):
        return value if suppress is None else suppress
    common = argparse.ArgumentParser(add_help=False)
    store = common.add_mutually_exclusive_group()
    store.add_argument('--metadata-path', default=default(workspace.metadata_path),
                       help='the ML Metadata SQLite store of local runs (default: %(default)s)')
    store.add_argument('--metadata-grpc', metavar='HOST:PORT', default=default(None),
                       help="a cluster's ML Metadata service instead, e.g. metadata-grpc-service.kubeflow:8080")
    common.add_argument('--reports-dir', default=default(workspace.report_dir),
                        help='where pages are written and looked for to link (default: %(default)s)')
    common.add_argument('--json', action='store_true', default=default(False), help='machine-readable output')
    return common


def _store(args):
    from foundation import metadata_store
    # Read-only: answering questions changes nothing.
    return metadata_store.connect_existing(args.metadata_path, args.metadata_grpc, mode=metadata_store.READ)


def _base_path(args) -> str:
    path = args.model_base_path
    return path.rstrip('/') if '://' in path else os.path.abspath(path)


def print_json(data) -> None:
    # NaN and infinities as null: JSON has no such numbers.
    print(json.dumps(json_ready(data), indent=2, sort_keys=True, default=str))


def _write_page(args, chosen: str, default_name: str, text: str) -> str:
    path = chosen or os.path.join(args.reports_dir, default_name)
    write_atomically(path, text)
    print(f'page: {path}', file=sys.stderr)
    return path


def lineage_command(args) -> int:
    from provenance import lineage as lineage_lib
    lineage = lineage_lib.trace(_store(args), _base_path(args), args.version)
    data = lineage.to_dict()
    print_json(data) if args.json else print(lineage_lib.render_text(data))
    if args.html is not None:
        from provenance import lineage_page
        _write_page(args, args.html, reports_page.report_file(reports_page.LINEAGE, args.version),
                    lineage_page.page(lineage, reports_dir=args.reports_dir, data=data))
    return 1 if lineage.history_problems else 0


def model_card_command(args) -> int:
    from provenance import lineage as lineage_lib, model_card
    lineage = lineage_lib.trace(_store(args), _base_path(args), args.version)
    template = model_card.load_template(args.template) if args.template else model_card.load_template()
    card = model_card.card(lineage, template)
    if args.json:
        print_json(card.to_dict())
    _write_page(args, args.output or '', reports_page.report_file(reports_page.MODEL_CARD, args.version),
                model_card.page(card, reports_dir=args.reports_dir))
    return 0


def runs_command(args) -> int:
    from provenance import run_record
    store = _store(args)
    if args.verb == 'compare':
        from provenance import run_comparison
        a, b = run_record.find(store, args.a), run_record.find(store, args.b)
        comparison = run_comparison.compare(a, b)
        print_json(comparison.to_dict()) if args.json else print(comparison.render_text())
        if args.html is not None:
            _write_page(args, args.html, reports_page.report_file(reports_page.COMPARISON, a.name, b.name),
                        run_comparison.page(comparison, reports_dir=args.reports_dir))
        return 0
    from provenance import run_history
    rows = run_history.rows(run_record.all_runs(store))
    print_json(rows) if args.json else print(run_history.render_text(rows))
    if args.html is not None:
        _write_page(args, args.html, reports_page.report_file(reports_page.RUNS),
                    run_history.page(rows, reports_dir=args.reports_dir))
    return 0
