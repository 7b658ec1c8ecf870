"""Continuous training on this machine: triggers (a schedule, a new span, monitoring
alerts) that start pipeline runs, each recording why it ran."""
