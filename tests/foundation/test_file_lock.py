"""The one exclusive lock: who holds it is named, a waiter gives up naming them, a killed holder frees it."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from foundation import file_lock

pytestmark = pytest.mark.unit


def _holding(path, holder: str) -> subprocess.Popen:
    """A process that takes the lock and keeps it until killed."""
    code = textwrap.dedent(f'''
        import sys, time
        from foundation import file_lock
        with file_lock.exclusive({str(path)!r}, holder={holder!r}):
            print('held', flush=True)
            time.sleep(600)
    ''')
    proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, 'PYTHONPATH': os.getcwd()})
    assert proc.stdout.readline().strip() == 'held'
    return proc


def test_a_waiter_gives_up_naming_the_holder_and_a_killed_holder_frees_the_lock(tmp_path):
    path = tmp_path / 'x.lock'
    proc = _holding(path, 'the other one')
    try:
        assert file_lock.is_held(str(path))
        assert file_lock.holder_of(str(path)) == 'the other one'
        waited = []
        started = time.monotonic()
        with pytest.raises(file_lock.Held) as raised:
            with file_lock.exclusive(str(path), wait_seconds=0.5, on_wait=waited.append):
                pytest.fail('took a lock someone else holds')
        assert raised.value.holder == 'the other one' and waited == ['the other one']
        assert 0.4 < time.monotonic() - started < 3
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The kernel released it with the process; nothing stale is left to clean.
    assert not file_lock.is_held(str(path))
    with file_lock.exclusive(str(path), holder='me'):
        assert file_lock.holder_of(str(path)) == 'me'
    assert file_lock.holder_of(str(path), 'nobody') == 'nobody'


def test_an_error_inside_the_lock_releases_it(tmp_path):
    path = str(tmp_path / 'y.lock')
    with pytest.raises(ValueError):
        with file_lock.exclusive(path):
            assert 'taxi-pipeline' in file_lock.holder_of(path) and str(os.getpid()) in file_lock.holder_of(path)
            raise ValueError('boom')
    assert not file_lock.is_held(path)
