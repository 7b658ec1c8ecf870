"""The one place that opens ML Metadata, and reads what its two kinds of writer store.

ML Metadata is the system's one record (runs, artifacts, lineage, monitoring passes, release
decisions). Two writers fill it, and they store the same things differently:
- TFX's LocalDagRunner: ints as `int_value`, each exec property a custom property of its own,
  types by TFX's names (`PushedModel`), runs in `pipeline_run` contexts.
- Kubeflow Pipelines v2: every number in an artifact's metadata as a `double_value`, a task's
  parameters in one `inputs` struct, types by their schema titles (`tfx.PushedModel`), runs in
  `system.PipelineRun` contexts.
Every reader goes through the functions here, so a property is read one way, right on both.
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Set, Tuple

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

MetadataStore = metadata_store.MetadataStore
ListOptions = metadata_store.ListOptions

# How a store is opened: answering questions changes nothing (READ); a writer of an existing
# store must not create an empty one where the path is wrong (WRITE); a first run creates it (CREATE).
READ, WRITE, CREATE = 'read', 'write', 'create'
_SQLITE_MODES = {READ: metadata_store_pb2.SqliteMetadataSourceConfig.READONLY,
                 WRITE: metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE,
                 CREATE: metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE}

# Context types of a pipeline run: LocalDagRunner's, and Kubeflow Pipelines v2's.
RUN_CONTEXT_TYPES = ('pipeline_run', 'system.PipelineRun')
# Kubeflow Pipelines v2 names TFX's artifact types by their schema title.
KFP_TYPE_PREFIX = 'tfx.'


class MissingStore(ValueError):
    """No store where one must already be: nothing to read yet, and none is created by asking."""


def connect(metadata_path: Optional[str] = None, grpc_address: Optional[str] = None,
            mode: str = CREATE) -> metadata_store.MetadataStore:
    """The local SQLite store at `metadata_path`, opened in `mode`, or a cluster's metadata gRPC
    service at `grpc_address` (HOST:PORT), where the mode is the service's to enforce."""
    if grpc_address:
        host, _, port = grpc_address.rpartition(':')
        if not host or not port.isdigit():
            raise ValueError(f'--metadata-grpc takes HOST:PORT (e.g. metadata-grpc-service.kubeflow:8080), '
                             f'not {grpc_address!r}')
        return metadata_store.MetadataStore(metadata_store_pb2.MetadataStoreClientConfig(host=host, port=int(port)))
    if not metadata_path:
        raise ValueError('ML Metadata needs a SQLite path or a gRPC address')
    return metadata_store.MetadataStore(sqlite_config(metadata_path, mode))


def sqlite_config(metadata_path: str, mode: str = CREATE) -> metadata_store_pb2.ConnectionConfig:
    """The connection config of a local SQLite store: what `connect` opens, and what LocalDagRunner is
    handed to open itself. CREATE makes the store's directory too, as TFX's own helper does."""
    if mode not in _SQLITE_MODES:
        raise ValueError(f'mode must be one of {", ".join(_SQLITE_MODES)}, not {mode!r}')
    if mode == CREATE and os.path.dirname(metadata_path):
        os.makedirs(os.path.dirname(metadata_path), exist_ok=True)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = _SQLITE_MODES[mode]
    return config


def connect_existing(metadata_path: Optional[str] = None, grpc_address: Optional[str] = None,
                     mode: str = READ) -> metadata_store.MetadataStore:
    """`connect`, refusing a local store that does not exist yet (MissingStore, one line that says
    what to do) instead of creating an empty one."""
    if not grpc_address and not (metadata_path and os.path.exists(metadata_path)):
        raise MissingStore(f'no ML Metadata store at {metadata_path}: run the pipeline first (`make run`), '
                           'or pass --metadata-path / --metadata-grpc')
    return connect(metadata_path, grpc_address, mode=WRITE if mode == CREATE else mode)


def connect_if_present(metadata_path: str) -> Optional[metadata_store.MetadataStore]:
    """The local store read-only, or None before the first run has created it."""
    return connect(metadata_path, mode=READ) if os.path.exists(metadata_path) else None


# -- reading what either runner wrote -----------------------------------------------------------------

def value(proto_value: metadata_store_pb2.Value):
    """An ML Metadata Value as Python: its string, int or float (None when unset)."""
    kind = proto_value.WhichOneof('value')
    return getattr(proto_value, kind) if kind else None


def number(properties, key: str, default=None):
    """A numeric property: an int locally, a double on Kubeflow Pipelines v2, which stores every number
    in an artifact's metadata as one. An integral double comes back as an int."""
    found = properties.get(key)
    if found is None:
        return default
    kind = found.WhichOneof('value')
    if kind == 'int_value':
        return found.int_value
    if kind == 'double_value':
        return int(found.double_value) if found.double_value.is_integer() else found.double_value
    if kind == 'string_value':  # a number some writer stored as text
        try:
            parsed = float(found.string_value)
        except ValueError:
            return default
        return int(parsed) if parsed.is_integer() else parsed
    return default


def flag(properties, key: str) -> bool:
    """A 0/1 property (`pushed`, `blessed`), whichever way it was stored."""
    return bool(number(properties, key, 0))


def text(properties, key: str, default: str = '') -> str:
    found = properties.get(key)
    return found.string_value if found is not None and found.HasField('string_value') else default


def exec_property(execution: metadata_store_pb2.Execution, name: str):
    """An execution's parameter: one custom property each under TFX's runners; Kubeflow Pipelines v2 keeps
    a task's parameters in one `inputs` struct (numbers as doubles: an integral one comes back an int)."""
    found = execution.custom_properties.get(name)
    if found is not None:
        return value(found)
    inputs = execution.custom_properties.get('inputs')
    if inputs is None or not inputs.HasField('struct_value') or name not in inputs.struct_value.fields:
        return None
    from google.protobuf import json_format
    found = json_format.MessageToDict(inputs.struct_value)[name]
    return int(found) if isinstance(found, float) and found.is_integer() else found


def type_name(name: str) -> str:
    """An artifact type's name without Kubeflow's schema prefix: 'tfx.Model' -> 'Model'."""
    return name[len(KFP_TYPE_PREFIX):] if name.startswith(KFP_TYPE_PREFIX) else name


def type_names(name: str) -> Tuple[str, str]:
    """A TFX artifact type's name as each runner records it: ('Model', 'tfx.Model')."""
    return name, f'{KFP_TYPE_PREFIX}{name}'


def artifacts_of_type(store, name: str):
    """Every artifact of a TFX type, under either runner's name for it."""
    return [a for kind in type_names(name) for a in store.get_artifacts_by_type(kind)]


def output_artifacts(store, execution_id: int) -> Dict[str, metadata_store_pb2.Artifact]:
    """Output artifacts of an execution by output key (the event path's first step)."""
    events = [e for e in store.get_events_by_execution_ids([execution_id])
              if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    return {e.path.steps[0].key: artifacts[e.artifact_id] for e in events if e.path.steps}


def quoted(text_value: str) -> str:
    """A string for an ML Metadata filter query, inside single quotes."""
    return "'" + text_value.replace("'", "\\'") + "'"


# -- the pushed model of a version --------------------------------------------------------------------

PUSHED_MODEL_TYPES = type_names('PushedModel')
# How a version's PushedModel was found: by its push destination, or only by its version number (the
# push destination differs, e.g. models copied elsewhere).
BY_DESTINATION, BY_VERSION = 'destination', 'version'


def find_pushed_model(store, model_base_path: str, version: int
                      ) -> Tuple[Optional[metadata_store_pb2.Artifact], Optional[str]]:
    """(the Pusher's artifact for a version, or None; how it was found: BY_DESTINATION, BY_VERSION, None)."""
    found = store.get_artifacts(list_options=metadata_store.ListOptions(filter_query=(
        f"({' OR '.join(f'type = {t!r}' for t in PUSHED_MODEL_TYPES)}) AND "
        f"custom_properties.pushed_version.string_value = '{int(version)}'")))
    destination = f'{model_base_path.rstrip("/")}/{int(version)}'
    exact = [a for a in found if text(a.custom_properties, 'pushed_destination') == destination]
    if exact:
        return exact[-1], BY_DESTINATION
    return (found[-1], BY_VERSION) if found else (None, None)


def pushed_model(store, model_base_path: str, version: int) -> Optional[metadata_store_pb2.Artifact]:
    """The Pusher's artifact for a version: by its push destination, else by its version number."""
    return find_pushed_model(store, model_base_path, version)[0]


def pushed_versions(store, model_base_path: str, by_version: bool = True) -> Set[int]:
    """The versions ML Metadata records as pushed to `model_base_path`: a PushedModel with `pushed` = 1
    and `pushed_destination` = <model_base_path>/<version>, as either runner records them; with
    `by_version`, also the `pushed_version` of every pushed PushedModel, as `find_pushed_model` falls back
    to (a version copied from another push destination with its ML Metadata; the registry calls it
    registered too). A version directory matching none is an orphan: a push killed before its artifact
    was published, or a directory put there by hand."""
    prefix = model_base_path.rstrip('/') + '/'
    found = set()
    for artifact in artifacts_of_type(store, 'PushedModel'):
        if not flag(artifact.custom_properties, 'pushed'):
            continue
        destination = text(artifact.custom_properties, 'pushed_destination').rstrip('/')
        tail = destination[len(prefix):] if destination.startswith(prefix) else ''
        version = text(artifact.custom_properties, 'pushed_version')
        if tail.isdigit():
            found.add(int(tail))
        elif by_version and version.isdigit():
            found.add(int(version))
    return found


# -- a store as one string: what a pipeline task is given ------------------------------------------------

# A component that reads ML Metadata gets no store handle from TFX: the runner's connection reaches it as
# one string parameter, constant per pipeline (so caching is unaffected). '' means no store (Vertex AI).
SQLITE_SCHEME, GRPC_SCHEME = 'sqlite:', 'grpc:'


def connection_parameter(metadata_path: Optional[str] = None, grpc_address: Optional[str] = None) -> str:
    """'grpc:HOST:PORT', 'sqlite:PATH', or '' when there is neither."""
    if grpc_address:
        return GRPC_SCHEME + grpc_address
    return SQLITE_SCHEME + metadata_path if metadata_path else ''


def connect_parameter(parameter: str) -> Optional[metadata_store.MetadataStore]:
    """The store a `connection_parameter` names, read-only where that is ours to choose; None for ''.
    A SQLite store that does not exist is refused (MissingStore): a task told there is a registry
    must not quietly run without one."""
    if not parameter:
        return None
    if parameter.startswith(GRPC_SCHEME):
        return connect(grpc_address=parameter[len(GRPC_SCHEME):])
    if parameter.startswith(SQLITE_SCHEME):
        return connect_existing(parameter[len(SQLITE_SCHEME):], mode=READ)
    raise ValueError(f'an ML Metadata connection is {SQLITE_SCHEME}PATH or {GRPC_SCHEME}HOST:PORT, not {parameter!r}')


# -- a store another process is writing ------------------------------------------------------------------

# What ML Metadata says when SQLite stayed locked through its own retries (about 20 s measured here: "Concurrent
# writes aborted after max number of retries"), or when a reader met a store being created.
_BUSY_WORDS = ('database is locked', 'busy', 'concurrent connection', 'concurrent writes aborted')


def is_busy(error: BaseException) -> bool:
    """Whether `error` is ML Metadata saying another process holds the store (retrying may succeed)."""
    return type(error).__module__.startswith('ml_metadata') and \
        any(word in str(error).lower() for word in _BUSY_WORDS)
