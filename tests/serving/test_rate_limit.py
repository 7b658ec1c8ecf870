"""The per-caller rate limit's arithmetic (serving/rate_limit.py), on an injected clock: a bucket
gives its burst at once and then its rate, says how long to wait, never holds more than its burst,
forgets idle callers without changing an answer, stays bounded, and holds under threads; and
where limits come from (flags, the tokens file)."""

import json
import threading

import pytest

from cli import main as cli
from serving import access
from serving.rate_limit import RateLimit, RateLimiter, TokenBucket, parse_limit, retry_after_seconds

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def test_a_bucket_gives_its_burst_at_once_then_its_rate():
    clock = Clock()
    limiter = RateLimiter(clock)
    limit = RateLimit(per_second=2, burst=5)
    assert [limiter.admit(('token', 'a'), limit) for _ in range(5)] == [0.0] * 5
    assert limiter.admit(('token', 'a'), limit) == pytest.approx(0.5)  # one more token in half a second
    clock.advance(0.25)
    assert limiter.admit(('token', 'a'), limit) == pytest.approx(0.25)  # a refused request takes nothing
    clock.advance(0.25)
    assert limiter.admit(('token', 'a'), limit) == 0.0
    assert limiter.admit(('token', 'a'), limit) == pytest.approx(0.5)
    # Over ten seconds: the rate, not the burst again.
    admitted = 0
    for _ in range(100):
        clock.advance(0.1)
        admitted += limiter.admit(('token', 'a'), limit) == 0.0
    assert admitted == 20


def test_a_bucket_never_holds_more_than_its_burst():
    bucket = TokenBucket(RateLimit(per_second=10, burst=3), now=0.0)
    assert bucket.take(3600.0, cost=3) == 0.0
    assert bucket.take(3600.0) == pytest.approx(0.1)


def test_callers_have_their_own_buckets_and_no_limit_means_no_bucket():
    clock = Clock()
    limiter = RateLimiter(clock)
    limit = RateLimit(per_second=1, burst=1)
    assert limiter.admit(('token', 'a'), limit) == 0.0
    assert limiter.admit(('token', 'a'), limit) > 0
    assert limiter.admit(('token', 'b'), limit) == 0.0
    # A token name and an address that read alike are different callers.
    assert limiter.admit(('address', 'a'), limit) == 0.0
    assert all(limiter.admit(('token', 'c'), None) == 0.0 for _ in range(100))
    assert len(limiter) == 3


def test_a_changed_limit_applies_from_the_next_request_without_a_new_burst():
    clock = Clock()
    limiter = RateLimiter(clock)
    for _ in range(10):
        limiter.admit(('token', 'a'), RateLimit(per_second=1, burst=10))
    # Tightened: what is left is capped at the new burst, never topped up to it.
    assert limiter.admit(('token', 'a'), RateLimit(per_second=0.5, burst=2)) == pytest.approx(2.0)
    clock.advance(2.0)
    assert limiter.admit(('token', 'a'), RateLimit(per_second=0.5, burst=2)) == 0.0


def test_idle_buckets_are_forgotten_once_full_which_changes_no_answer():
    clock = Clock()
    limiter = RateLimiter(clock)
    limit = RateLimit(per_second=1, burst=4)
    for i in range(50):
        limiter.admit(('address', f'10.0.0.{i}'), limit)
    assert len(limiter) == 50
    clock.advance(0.5)  # not full yet (3 of 4 left, refilling at 1/s: full one second after their use)
    limiter.admit(('address', '10.0.0.0'), limit)
    assert len(limiter) == 50
    clock.advance(0.5)
    limiter.admit(('address', '10.0.1.1'), limit)
    # Every bucket used only before is full again, hence gone; the two in use stay.
    assert len(limiter) == 2
    # A forgotten caller starts with a full bucket, which is what it had.
    assert [limiter.admit(('address', '10.0.0.7'), limit) for _ in range(5)][-2:] == [0.0, pytest.approx(1.0)]


def test_memory_is_bounded_however_many_addresses_a_client_comes_from():
    limiter = RateLimiter(Clock(), max_buckets=1000)
    limit = RateLimit(per_second=0.001, burst=1)  # nothing refills within the test: nothing expires by age
    for i in range(20_000):
        limiter.admit(('address', f'2001:db8::{i:x}'), limit)
    assert len(limiter) == 1000
    # The most recent callers are the ones kept.
    assert limiter.admit(('address', f'2001:db8::{19_999:x}'), limit) > 0


def test_threads_get_exactly_the_burst_between_them():
    limiter = RateLimiter(Clock())  # the clock stands still: no refill, only the burst
    limit = RateLimit(per_second=1, burst=500)
    admitted = []
    barrier = threading.Barrier(8)

    def hammer():
        barrier.wait()
        admitted.append(sum(limiter.admit(('token', 'shared'), limit) == 0.0 for _ in range(200)))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(admitted) == 500


@pytest.mark.parametrize('wait, seconds', [(0.001, 1), (1.0, 1), (1.2, 2), (99.99, 100)])
def test_retry_after_is_whole_seconds_rounded_up(wait, seconds):
    assert retry_after_seconds(wait) == seconds


@pytest.mark.parametrize('text, burst, message', [
    ('fast', None, "--rate-limit 'fast': give the requests per second"),
    ('0', None, 'positive number of requests per second'),
    ('-3', None, 'positive number of requests per second'),
    ('nan', None, 'positive number of requests per second'),
    ('inf', None, 'positive number of requests per second'),
    ('5', 0.5, 'burst of at least 1 request'),
])
def test_bad_limits_are_refused_naming_the_flag(text, burst, message):
    with pytest.raises(ValueError, match='--rate-limit') as caught:
        parse_limit(text, burst)
    assert message in str(caught.value)


def test_the_burst_defaults_to_one_seconds_worth_and_at_least_one():
    assert parse_limit('20') == RateLimit(20, 20)
    assert parse_limit('0.2') == RateLimit(0.2, 1)
    assert parse_limit('2', 7) == RateLimit(2, 7)


# -- the tokens file -------------------------------------------------------------------------------

def test_a_token_carries_its_own_limit_or_none_through_add_list_and_revoke(tmp_path, capsys):
    path = str(tmp_path / 'tokens.json')
    access.add_token(path, 'plain', {'predict'})
    assert cli.main(['serving-tokens', 'add', '--file', path, '--name', 'slow', '--roles', 'predict',
                     '--rate-limit', '0.5', '--rate-burst', '3']) == 0
    assert cli.main(['serving-tokens', 'add', '--file', path, '--name', 'batch', '--roles', 'predict',
                     '--rate-limit', 'unlimited']) == 0
    capsys.readouterr()
    with open(path) as f:
        entries = {e['name']: e for e in json.load(f)['tokens']}
    assert 'rate_limit' not in entries['plain']
    assert entries['slow']['rate_limit'] == {'per_second': 0.5, 'burst': 3}
    assert entries['batch']['rate_limit'] == 'unlimited'
    default = RateLimit(10, 20)
    by_name = {t.name: t for t in access.list_tokens(path)}
    assert by_name['plain'].limit(default) == default and by_name['plain'].limit(None) is None
    assert by_name['slow'].limit(default) == RateLimit(0.5, 3) and by_name['slow'].limit(None) == RateLimit(0.5, 3)
    assert by_name['batch'].limit(default) is None
    # Rewriting the file (a revoke) keeps the others' limits.
    access.revoke_token(path, 'plain')
    assert {t.name: t.rate_limit for t in access.list_tokens(path)} == {'slow': RateLimit(0.5, 3),
                                                                         'batch': 'unlimited'}
    assert cli.main(['serving-tokens', 'list', '--file', path]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[:4] == ['name', 'roles', 'rate', 'limit']
    assert 'unlimited' in listing[1] and '0.5/s, burst 3' in listing[2]


@pytest.mark.parametrize('limit, message', [
    ({'per_second': 0}, 'positive number of requests per second'),
    ({'per_second': 5, 'burst': 0}, 'burst of at least 1'),
    ({'burst': 5}, '"rate_limit" must be'),
    ({'per_second': '5'}, '"rate_limit" must be'),
    ({'per_second': True}, '"rate_limit" must be'),
    ({'per_second': 5, 'every': 'minute'}, '"rate_limit" must be'),
    ('none', '"rate_limit" must be'),
    (5, '"rate_limit" must be'),
])
def test_a_malformed_limit_in_the_tokens_file_names_the_token(tmp_path, limit, message):
    path = tmp_path / 'tokens.json'
    path.write_text(json.dumps({'tokens': [{'name': 'ci-bot', 'sha256': '0' * 64, 'roles': ['predict'],
                                            'rate_limit': limit}]}))
    with pytest.raises(ValueError) as caught:
        access.read_tokens(str(path))
    assert "token 1 ('ci-bot')" in str(caught.value) and message in str(caught.value)


@pytest.mark.parametrize('argv, message', [
    (['--rate-burst', '5'], '--rate-burst needs --rate-limit'),
    (['--rate-limit', 'often'], "--rate-limit 'often'"),
    (['--rate-limit', '0'], 'positive number'),
    # Only a token may be unlimited: the server's limit is a number.
    (['--rate-limit', 'unlimited'], "--rate-limit 'unlimited'"),
])
def test_serve_refuses_bad_rate_flags_before_starting(argv, message, capsys, tmp_path):
    assert cli.main(['serve', '--model-base-path', str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_the_startup_line_says_which_limits_apply(tmp_path):
    assert access.describe_limits(None, None) == 'none (--rate-limit)'
    assert access.describe_limits(None, RateLimit(5, 10)).startswith('5/s, burst 10 per client address')
    path = str(tmp_path / 'tokens.json')
    access.add_token(path, 'ci-bot', {'predict'})
    access.add_token(path, 'batch', {'predict'}, access.UNLIMITED)
    line = access.describe_limits(access.AccessControl(path), RateLimit(5, 10))
    assert line == '5/s, burst 10 per token; own limits: batch unlimited; over it: 429 / RESOURCE_EXHAUSTED'
