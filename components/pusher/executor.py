"""TFX's Pusher executor with an atomic push and a sweep of what killed pushes left.

Everything TFX 1.16's `tfx.components.pusher.executor.Executor.Do` does is kept, in its order: the
blessing check (`CheckBlessing`: not blessed, `pushed` = 0 and nothing copied), the model path
(`GetModelPath`), the version name (the Unix time, `Versioning.UNIX_TIMESTAMP` for AUTO), an
existing destination skipped, the model archived at the artifact's URI, and `_MarkPushed`
(`pushed` = 1, `pushed_destination`, `pushed_version`). Two things differ:
- the copy goes through `push_destination.push`: a temporary sibling renamed into place, so no
  server, baseline or drift check ever sees a partial version (TF's copy wrote into the version
  directory itself, saved_model.pb last: a kill left a truncated version behind);
- first, `push_destination.sweep` quarantines leftovers of earlier pushes, each logged in one line and
  listed in the artifact's `quarantined` property (absent when there were none). Given the store
  (custom_config `metadata_connection`), complete versions ML Metadata has no PushedModel for are
  swept too, once past the grace period.
"""

import json
import os
import time
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from components.pusher import push_destination
from foundation import metadata_store

# The key of custom_config that carries the runner's ML Metadata connection (metadata_store.connection_parameter).
METADATA_CONNECTION = 'metadata_connection'
# The PushedModel's property listing what the sweep quarantined (JSON: [{path, kind, reason, moved_to}]).
QUARANTINED = 'quarantined'


class Executor(tfx_pusher.Executor):
    """Pushes a blessed model to a filesystem destination, atomically."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        destination_kind = destination.WhichOneof('destination')
        if destination_kind != 'filesystem':
            raise NotImplementedError(f'Invalid push destination {destination_kind}')
        base = destination.filesystem.base_directory
        self._sweep(base, exec_properties, model_push)

        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = self.GetModelPath(input_dict)
        fs_config = destination.filesystem
        if fs_config.versioning == tfx_pusher._Versioning.AUTO:
            fs_config.versioning = tfx_pusher._Versioning.UNIX_TIMESTAMP
        if fs_config.versioning != tfx_pusher._Versioning.UNIX_TIMESTAMP:
            raise NotImplementedError(f'Invalid Versioning {fs_config.versioning}')
        model_version = str(int(time.time()))
        logging.info('Model version: %s', model_version)
        serving_path = os.path.join(base, model_version)
        if fileio.exists(serving_path):
            logging.info('Destination directory %s already exists, skipping current push.', serving_path)
        else:
            push_destination.push(model_path, base, model_version, by=self._who(), log=logging.warning)
            logging.info('Model written to serving path %s.', serving_path)

        # Copy the model to pushing uri for archiving.
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=model_version)
        logging.info('Model pushed to %s.', model_push.uri)

    def _sweep(self, base: str, exec_properties: Dict[str, Any], model_push: types.Artifact) -> None:
        custom_config = json.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or 'null') or {}
        known = None
        store = metadata_store.connect_parameter(custom_config.get(METADATA_CONNECTION, ''))
        if store is not None:
            known = metadata_store.pushed_versions(store, base)
        moved = push_destination.sweep(base, known_versions=known, by=self._who(), log=logging.warning)
        if moved:
            model_push.set_string_custom_property(QUARANTINED, json.dumps(
                [{'path': leftover.path, 'kind': leftover.kind, 'reason': leftover.reason, 'moved_to': target}
                 for leftover, target in moved], sort_keys=True))

    def _who(self) -> str:
        run = self._context.pipeline_run_id if self._context is not None else None
        return f'Pusher{f" of run {run}" if run else ""}, {push_destination.who()}'
