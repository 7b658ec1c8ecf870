"""What the repository's own files declare, for tests that hold other files to them."""

import os
import re
import subprocess

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def makefile_default(name: str) -> str:
    """A Makefile variable's default (`NAME ?= value`), with $(VAR) references expanded."""
    with open(os.path.join(REPO, 'Makefile')) as f:
        defaults = dict(re.findall(r'^(\w+)\s*\?=\s*(.*?)\s*$', f.read(), re.M))
    value = defaults[name]
    for _ in range(10):
        value = re.sub(r'\$\((\w+)\)', lambda m: defaults[m.group(1)], value)
    assert '$(' not in value
    return value


def kustomized(directory: str) -> dict:
    """What `kubectl kustomize` renders for `directory` (locally: no cluster), by (kind, name)."""
    out = subprocess.run(['kubectl', 'kustomize', os.path.join(REPO, directory)], capture_output=True, text=True,
                         timeout=30, check=True)
    return {(d['kind'], d['metadata']['name']): d for d in yaml.safe_load_all(out.stdout) if d}
