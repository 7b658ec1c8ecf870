"""The fixed clock of the monitoring tests: logs are written at chosen times around it."""

HOUR = 3600 * 1_000_000
END = 1_800_000_000 * 1_000_000  # a fixed "now": 2027-01-15T08:00:00Z
