"""`taxi-pipeline`: run the pipeline locally, compile it for Kubeflow, serve and query its models.

A thin dispatcher: each command's parser and handler live with the code they
drive (`pipeline.commands`, `serving.commands`, `monitoring.commands`,
`cli.served_model`). Handlers return 0 or raise; one table maps what they
raise to the exit code: 0 success (including a model that was evaluated and
not blessed: the pipeline did its job), 1 something failed, 2 bad input;
`monitor` returns 3 when it raised an alert.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
import threading
import warnings
from typing import Optional

# tf.Transform and TFMA need Keras 2; TF 2.16's tf.keras is Keras 3 unless this
# is set before TensorFlow loads. The pipeline image sets it in its ENV.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
# 3 is a monitoring pass that alerted (monitoring.commands.ALERT_EXIT).
EXIT_BUSY = 4


def _exit_codes():
    """(exception type, exit code), most specific first; anything else is a failure."""
    from components.anomalies_gate.gate import GATE_ERRORS
    from pipeline.workspace_lock import WorkspaceBusy
    from release.ledger import Busy as ReleaseBusy
    return ((WorkspaceBusy, EXIT_BUSY),              # another run holds the workspace; nothing was started
            (ReleaseBusy, EXIT_BUSY),              # another release decision is being made or taking effect
            (GATE_ERRORS, EXIT_BAD_INPUT),         # data that fails the curated schema, or drifted and blocked
            (ValueError, EXIT_BAD_INPUT),          # bad arguments, files or data (DataError is one)
            (OSError, EXIT_BAD_INPUT),             # a file named on the command line cannot be read
            (Exception, EXIT_FAILED))


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


def parser() -> argparse.ArgumentParser:
    from cli import batch_scoring, served_model
    from foundation.workspace import Workspace
    from monitoring import commands as monitoring_commands
    from pipeline import commands as pipeline_commands
    from provenance import commands as provenance_commands, reports as provenance_reports
    from release import commands as release_commands
    from scheduler import commands as scheduler_commands
    from serving import commands as serving_commands
    root = argparse.ArgumentParser(prog='taxi-pipeline', description=__doc__.split('\n')[0])
    commands = root.add_subparsers(dest='command', required=True)
    workspace = Workspace()
    pipeline_commands.register(commands, workspace, run_pages=provenance_reports.write_run_pages)
    serving_commands.register(commands, default_model_base_path=workspace.absolute().model_base_path)
    served_model.register(commands)
    batch_scoring.register(commands, default_model_base_path=workspace.absolute().model_base_path)
    monitoring_commands.register(commands, workspace)
    scheduler_commands.register(commands, workspace)
    release_commands.register(commands, workspace)
    provenance_commands.register(commands, workspace)
    return root


def error_line(error: BaseException, metadata_path: Optional[str] = None) -> tuple:
    """(exit code, what the user reads) for a failed command. Our own errors say what they mean, over
    several lines where there is a list (the anomalies a span has); ML Metadata's carry whole protos,
    so only their first line is shown, and a store another process is writing is busy, not broken: the
    message names who holds it when the workspace lock beside a local store says."""
    from foundation import metadata_store
    text = str(error).strip()
    code = next(code for kind, code in _exit_codes() if isinstance(error, kind))
    if not type(error).__module__.startswith('ml_metadata'):
        return code, text
    line = next((part.strip() for part in text.splitlines() if part.strip()), type(error).__name__)
    if metadata_store.is_busy(error):
        from pipeline.workspace_lock import current_holder
        holder = current_holder(os.path.dirname(os.path.abspath(metadata_path))) if metadata_path else None
        return EXIT_BUSY, (f'the ML Metadata store{" " + metadata_path if metadata_path else ""} is busy: '
                           f'{holder or "another process"} is writing it, and ML Metadata gave up after retrying for '
                           f'about 20 s ({line}); run it again once that one is done')
    return code, line


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    configure_logging(getattr(args, 'verbose', False))
    try:
        return args.handler(args)
    except Exception as e:
        code, line = error_line(e, None if getattr(args, 'metadata_grpc', None) else
                                getattr(args, 'metadata_path', None))
        print(f'error: {line}', file=sys.stderr)
        return code


def console_main() -> None:
    """The `taxi-pipeline` console script: `main()`, then an exit without the interpreter's teardown.

    After a pipeline run the teardown is a noticeable part of the run (TensorFlow's and Beam's
    objects finalised one by one) for nothing: every artifact, record, page and log is written
    and closed by the time `main` returns
    (docs/decisions.md#the-console-script-skips-the-interpreters-teardown). The exit handlers
    still run (they flush logging and remove temporary directories); a normal exit is kept while
    any non-daemon thread is still working, since it would wait for it."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()  # what a normal exit runs first; CPython's, there is no public name for it
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == '__main__':
    console_main()
