"""What infra validation found: each check's outcome, and the figures. Plain data, shared by `checks` and
`behaviour`."""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional


@dataclasses.dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclasses.dataclass
class Report:
    checks: List[Check] = dataclasses.field(default_factory=list)
    load_seconds: Optional[float] = None
    memory_mb: Optional[float] = None
    latency_ms: Dict[str, Dict[str, float]] = dataclasses.field(default_factory=dict)
    requests: int = 0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failed(self) -> List[Check]:
        return [c for c in self.checks if not c.passed]

    def add(self, name: str, passed: bool, detail: str) -> bool:
        self.checks.append(Check(name, passed, detail))
        return passed

    def reason(self) -> str:
        """One line: the first failed check, and how many more failed."""
        failed = self.failed
        if not failed:
            return 'every check passed'
        more = f' (and {len(failed) - 1} more failed check(s))' if len(failed) > 1 else ''
        return f'{failed[0].name}: {failed[0].detail}{more}'

    def as_dict(self) -> Dict:
        return {'passed': self.passed, 'load_seconds': self.load_seconds, 'memory_mb': self.memory_mb,
                'latency_ms': self.latency_ms, 'requests': self.requests,
                'checks': [dataclasses.asdict(c) for c in self.checks]}
