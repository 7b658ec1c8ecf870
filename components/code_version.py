"""Which code ran: recorded with every run and on every model, in ML Metadata.

"What code made this model" needs more than a package version: the git
commit and whether the tree had uncommitted changes (a local run), or the
image and the commit it was built from (Kubeflow: the Dockerfile bakes both
in as environment variables, since a container has no .git). A digest of
the code the components import (`taxi_model/`, `components/`) says exactly
what ran even from a dirty tree, where the commit alone would not.

It lives with the components because the Trainer's executor stamps it on
every model (imports point from the pipeline to the components, not back).

Recorded twice, because each answers a different question:
- on the pipeline_run context by the local runner (the code that ran the run);
- on the Model artifact by the Trainer's executor, under every runner (the
  code that trained the model; a cached Trainer keeps the model's own).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import os
import subprocess
from typing import Dict, Optional

from ml_metadata.proto import metadata_store_pb2

# Set in the pipeline image (Dockerfile ARGs, from Cloud Build's $COMMIT_SHA and image tag).
COMMIT_VARIABLE, IMAGE_VARIABLE = 'TAXI_CODE_COMMIT', 'TAXI_CODE_IMAGE'
DISTRIBUTION = 'taxi-tfx-pipeline'
# The packages whose code runs inside the components (user code by module path).
COMPONENT_CODE = ('taxi_model', 'components')
_REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = 'code_'


@dataclasses.dataclass(frozen=True)
class CodeVersion:
    commit: Optional[str] = None
    # None: not known (no git; an image is built from a commit, so it is clean by construction).
    dirty: Optional[bool] = None
    image: Optional[str] = None
    package_version: Optional[str] = None
    tfx_version: Optional[str] = None
    # SHA-256 over the component code's .py files (relative path and content).
    source_digest: Optional[str] = None

    def describe(self) -> str:
        commit = (self.commit[:12] if self.commit else 'unknown commit') + (' (uncommitted changes)' if self.dirty
                                                                          else '')
        parts = [commit] + ([f'image {self.image}'] if self.image else [])
        parts.append(f'package {self.package_version or "?"}, tfx {self.tfx_version or "?"}')
        if self.source_digest:
            parts.append(f'component code sha256:{self.source_digest[:12]}')
        return '; '.join(parts)

    def properties(self) -> Dict[str, str]:
        """As ML Metadata string custom properties (`code_<field>`); unknown fields left out."""
        values = dataclasses.asdict(self)
        return {PREFIX + k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in values.items()
                if v is not None}


def _git(*args: str) -> Optional[str]:
    if not os.path.exists(os.path.join(_REPOSITORY, '.git')):
        return None
    try:
        done = subprocess.run(['git', '-C', _REPOSITORY, *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def source_digest(repository: str = _REPOSITORY) -> str:
    digest = hashlib.sha256()
    for package in COMPONENT_CODE:
        root = os.path.join(repository, package)
        files = sorted(os.path.relpath(os.path.join(d, name), repository) for d, _, names in os.walk(root)
                       for name in names if name.endswith('.py'))
        for relative in files:
            with open(os.path.join(repository, relative), 'rb') as f:
                digest.update(f'{relative}\0{hashlib.sha256(f.read()).hexdigest()}\n'.encode())
    return digest.hexdigest()


def _version(distribution: str) -> Optional[str]:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def current() -> CodeVersion:
    """The code of this process: the image's baked-in commit if set, else the repository's git state."""
    commit, dirty = os.environ.get(COMMIT_VARIABLE) or None, None
    if commit is None:
        head = _git('rev-parse', 'HEAD')
        commit = head.strip() if head else None
        status = _git('status', '--porcelain') if commit else None
        dirty = bool(status.strip()) if status is not None else None
    return CodeVersion(commit=commit, dirty=dirty, image=os.environ.get(IMAGE_VARIABLE) or None,
                       package_version=_version(DISTRIBUTION), tfx_version=_version('tfx'),
                       source_digest=source_digest())


def stamp(properties, version: CodeVersion) -> None:
    """Writes `version` into a proto custom_properties map (an artifact's or a context's)."""
    for key, value in version.properties().items():
        properties[key].string_value = value


def read(properties) -> Optional[CodeVersion]:
    """The CodeVersion in a custom_properties map, or None if nothing was recorded there."""
    found = {key[len(PREFIX):]: value.string_value for key, value in properties.items() if key.startswith(PREFIX)}
    if not found:
        return None
    fields = {f.name for f in dataclasses.fields(CodeVersion)}
    values = {k: v for k, v in found.items() if k in fields}
    if 'dirty' in values:
        values['dirty'] = values['dirty'] == 'true'
    return CodeVersion(**values)


def record(store, run: metadata_store_pb2.Context, version: CodeVersion) -> None:
    stamp(run.custom_properties, version)
    store.put_contexts([run])
