"""Releases: which pushed version serves, who decided it and why; approvals, canaries and rollbacks,
recorded in ML Metadata as a hash-chained ledger."""
