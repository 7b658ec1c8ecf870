"""Waiting for what a server does in the background, without sleeping as an assertion."""

import socket
import time


def wait_for(condition, timeout=30.0, interval=0.05):
    """`condition()`'s first truthy value within `timeout` seconds, else AssertionError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError('timed out waiting for the server')


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
