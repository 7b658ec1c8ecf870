"""The people in release/approvers.yaml the tests act as, and one who is not in it."""

ALICE, CAROL = 'alice@example.com', 'carol@example.com'  # approve (Carol also promotes)
BOB, EVALUATOR = 'bob@example.com', 'canary-evaluator'  # promote
MALLORY = 'mallory@example.com'  # no role
