"""Durations as people type them on the command line and in config: 30s, 10m, 1h, 1d."""

import re

_DURATION = re.compile(r'^(\d+)([smhd])$')
_SECONDS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400}


def parse_duration(text: str, flag: str) -> int:
    """Seconds in a duration like 30s, 10m, 1h or 1d; ValueError naming `flag` otherwise."""
    match = _DURATION.match(text or '')
    if not match:
        raise ValueError(f'{flag} takes a duration like 30m, 1h or 1d, not {text!r}')
    seconds = int(match.group(1)) * _SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f'{flag} must be longer than 0')
    return seconds
