"""A local workspace's layout, as one typed object.

Everything a local run, the server, the monitor and the release commands write lives under one
directory. Commands take their defaults from here, so the layout is spelled out once.
"""

from __future__ import annotations

import dataclasses
import os

DEFAULT_ROOT = 'workspace'
# The pipeline's name, and the served model's: pushed versions live in serving_model/<name>/.
MODEL_NAME = 'chicago-taxi'


@dataclasses.dataclass(frozen=True)
class Workspace:
    """The paths of a workspace rooted at `root` (kept as given: relative stays relative)."""

    root: str = DEFAULT_ROOT

    def _path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def data_root(self) -> str:
        """span-N/ CSV directories."""
        return self._path('data')

    @property
    def pipeline_root(self) -> str:
        """Every artifact a run produced, by component."""
        return self._path('pipeline_root')

    @property
    def metadata_path(self) -> str:
        """ML Metadata's SQLite store: runs, artifacts, lineage, monitoring, releases."""
        return self._path('metadata.sqlite')

    @property
    def model_base_path(self) -> str:
        """Pushed SavedModels, one directory per version: what TF Serving's --model_base_path names."""
        return self._path('serving_model', MODEL_NAME)

    @property
    def request_log_dir(self) -> str:
        return self._path('request_logs')

    @property
    def feedback_dir(self) -> str:
        return self._path('feedback')

    @property
    def serving_config(self) -> str:
        """TF Serving's model config whose version labels the release commands move."""
        return self._path('serving_config', 'models.config')

    @property
    def report_dir(self) -> str:
        """HTML pages: runs, lineage, model cards, registry, monitoring."""
        return self._path('reports')

    def absolute(self) -> 'Workspace':
        return Workspace(os.path.abspath(self.root))
