"""One run per workspace: a second one refuses (exit 4, naming the first) or
waits; a run killed with SIGKILL leaves no phantom: the next run marks its
execution CANCELED, names what it left behind, and completes from cache; and
the killed run keeps the trigger it was started with."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from ml_metadata.proto import metadata_store_pb2

from foundation import metadata_store
from cli import main as cli
from pipeline import data, run_summary, run_trigger
from pipeline.config import PipelineConfig
from pipeline.workspace_lock import LOCK_FILE, WorkspaceBusy, WorkspaceLock
from provenance import lineage, run_history, run_record
from support.samples import SAMPLE_ROWS, TRAIN_STEPS

pytestmark = pytest.mark.e2e


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _hold_lock(workspace, seconds):
    """Another process holding the workspace for `seconds`; returns once it holds it."""
    code = textwrap.dedent(f'''
        import sys, time
        from pipeline.workspace_lock import WorkspaceLock
        with WorkspaceLock({str(workspace)!r}, command='run'):
            print('held', flush=True)
            time.sleep({seconds})
    ''')
    holder = subprocess.Popen([sys.executable, '-c', code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, 'PYTHONPATH': REPO})
    assert holder.stdout.readline().strip() == 'held'
    return holder


def test_a_second_run_refuses_naming_the_first_and_starts_nothing(tmp_path, capsys):
    data.prepare_sample(str(tmp_path / 'data'), rows=100)
    holder = _hold_lock(tmp_path, 60)
    try:
        assert cli.main(['run', '--workspace', str(tmp_path)]) == cli.EXIT_BUSY
        error = capsys.readouterr().err
        assert f'pid {holder.pid}' in error and '--wait' in error
        assert not (tmp_path / 'metadata.sqlite').exists() and not (tmp_path / 'pipeline_root').exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_waiting_run_starts_once_the_first_releases_the_workspace(tmp_path):
    holder = _hold_lock(tmp_path, 1.5)
    lines = []
    started = time.monotonic()
    with WorkspaceLock(str(tmp_path), wait_seconds=30, emit_line=lines.append):
        waited = time.monotonic() - started
    holder.wait()
    assert waited > 0.5 and any(f'pid {holder.pid}' in line for line in lines)
    with pytest.raises(WorkspaceBusy):  # and a holder that is killed frees it at once: the kernel releases it
        with WorkspaceLock(str(tmp_path)), WorkspaceLock(str(tmp_path)):
            pass
    killed = _hold_lock(tmp_path, 60)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    with WorkspaceLock(str(tmp_path)):
        assert (tmp_path / LOCK_FILE).exists()


def _executions_by_state(metadata_path):
    store = metadata_store.connect_existing(metadata_path)
    return {e.id: e for e in store.get_executions()}


# A run killed the moment LocalDagRunner is done with it: every component finished (its Pusher pushed), and
# nothing after the pipeline ran (no summary, no progress stop).
RUN_THEN_SIGKILL = '''
import os, signal, sys
from tfx import v1 as tfx
from cli import main as cli
ran = tfx.orchestration.LocalDagRunner.run
def run_then_die(self, pipeline):
    ran(self, pipeline)
    os.kill(os.getpid(), signal.SIGKILL)
tfx.orchestration.LocalDagRunner.run = run_then_die
sys.exit(cli.main(sys.argv[1:]))
'''


def test_a_run_killed_during_training_is_marked_abandoned_and_the_next_completes_from_cache(tmp_path):
    """Two runs killed with SIGKILL: one during training, the next (which marks the first's phantom and
    completes from cache) as soon as its pipeline is done. Each keeps the trigger it was started with."""
    data.prepare_sample(str(tmp_path / 'data'), rows=SAMPLE_ROWS)
    config = PipelineConfig.for_workspace(str(tmp_path), train_steps=TRAIN_STEPS, eval_steps=50)
    arguments = ['run', '--workspace', str(tmp_path), '--train-steps', str(TRAIN_STEPS), '--eval-steps', '50']
    scheduled = run_trigger.Trigger(run_trigger.SCHEDULE, {'cron': '0 3 * * *'})
    command = [os.path.join(os.path.dirname(sys.executable), 'taxi-pipeline'), *arguments,
               '--trigger', scheduled.kind, '--trigger-detail', json.dumps(scheduled.detail)]
    killed = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        trainer = None
        while trainer is None and time.monotonic() < deadline and killed.poll() is None:
            time.sleep(0.5)
            if os.path.exists(config.metadata_path):
                try:
                    running = run_summary.latest_run_executions(metadata_store.connect_existing(config.metadata_path),
                                                                config)
                except Exception:  # the run holds SQLite's lock; look again
                    continue
                execution = running.get('Trainer')
                if execution is not None and execution.last_known_state == metadata_store_pb2.Execution.RUNNING:
                    trainer = execution
        assert trainer is not None, 'the run never reached the Trainer'
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    assert _executions_by_state(config.metadata_path)[trainer.id].last_known_state == \
        metadata_store_pb2.Execution.RUNNING  # the phantom a killed run leaves
    store = metadata_store.connect_existing(config.metadata_path)
    (first,) = store.get_contexts_by_type('pipeline_run')
    assert run_trigger.read(first) == scheduled  # recorded while it ran, not at an end it never reached

    alerted = run_trigger.Trigger(run_trigger.ALERT, {'alerts': ['auc_drop']})
    second = subprocess.run([sys.executable, '-c', RUN_THEN_SIGKILL, *arguments, '--trigger', alerted.kind,
                             '--trigger-detail', json.dumps(alerted.detail)], cwd=REPO, capture_output=True,
                            text=True, timeout=600, env={**os.environ, 'PYTHONPATH': REPO, 'PYTHONUNBUFFERED': '1'})
    assert second.returncode == -signal.SIGKILL, second.stderr[-3000:]
    lines = second.stdout.splitlines()
    assert any(f'Trainer (execution {trainer.id})' in line and 'CANCELED' in line for line in lines)
    assert not any(line.startswith('Run ') for line in lines)  # killed before its summary
    after = _executions_by_state(config.metadata_path)
    stale = after[trainer.id]
    assert stale.last_known_state == metadata_store_pb2.Execution.CANCELED
    assert 'abandoned_by' in stale.custom_properties
    assert not [e for e in after.values() if e.last_known_state == metadata_store_pb2.Execution.RUNNING]

    store = metadata_store.connect_existing(config.metadata_path)
    killed_run, completed = run_record.all_runs(store)
    assert killed_run.name == first.name and killed_run.outcome == 'canceled'
    # Everything before the Trainer had completed in the killed run, and is reused.
    assert completed.outcome == 'succeeded' and completed.pushed_version is not None
    assert completed.step('Transform').state == 'cached' and completed.step('Trainer').state == 'done'
    assert (killed_run.trigger, completed.trigger) == (scheduled, alerted)
    # `runs` and `lineage` show both triggers.
    listed = run_history.rows([killed_run, completed])
    assert [(r['trigger'], r['trigger_detail']) for r in listed] == [(scheduled.kind, scheduled.detail),
                                                                      (alerted.kind, alerted.detail)]
    traced = lineage.trace(store, config.serving_model_dir, completed.pushed_version)
    assert traced.run.name == completed.name
    assert traced.to_dict()['run']['trigger'] == {'kind': alerted.kind, 'detail': alerted.detail}


def test_the_trigger_of_a_run_is_recorded_with_it(first_run):
    config, result, _ = first_run
    store = metadata_store.connect_existing(config.metadata_path)
    (context,) = [c for c in store.get_contexts_by_type('pipeline_run') if c.name == result.run_id]
    assert run_trigger.read(context) == run_trigger.Trigger(run_trigger.MANUAL)


@pytest.mark.parametrize('detail', ['[1, 2]', 'not json'])
def test_a_trigger_detail_that_is_not_a_json_object_is_refused(tmp_path, detail, capsys):
    data.prepare_sample(str(tmp_path / 'data'), rows=100)
    assert cli.main(['run', '--workspace', str(tmp_path), '--trigger', 'alert', '--trigger-detail', detail]) \
        == cli.EXIT_BAD_INPUT
    assert 'JSON object' in capsys.readouterr().err
