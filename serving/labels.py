"""Canary and rollback: point the `stable` and `canary` labels at model versions.

Edits TF Serving's ModelServerConfig (serving/config/models.config) so that the
model loads exactly the labelled versions (a `specific` version policy) and the
labels point at them. Servers pick the change up through config polling.

TF Serving checks labels before it loads anything, and refuses to move an
existing label to a version it has not loaded (allow_version_labels_for_
unavailable_models only covers new labels). A config that moves `stable` to an
unloaded version is refused on every poll, so that version never loads. Hence
two steps when a label moves to a version the current config does not load:
`set_labels` first only adds the version to the policy (labels unchanged) and
returns it as pending; once the servers have loaded it, the same call moves the
labels and drops the versions no label needs. `staged=False` writes the final
state at once, for a config no running server has loaded yet (first deploy).

Pure Python and protobuf: no TensorFlow import.
"""

from __future__ import annotations

import os
from typing import Dict, FrozenSet, Iterable, Mapping, Optional

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from foundation.atomic_file import write_atomically
from serving import CANARY_LABEL, STABLE_LABEL, protos


def _read(config_path: str):
    """(header comment lines, parsed ModelServerConfig)."""
    with open(config_path) as f:
        text = f.read()
    header = []
    for line in text.splitlines(keepends=True):
        if line.strip() and not line.lstrip().startswith('#'):
            break
        header.append(line)
    config = protos.parse_text(text, model_server_config_pb2.ModelServerConfig(), config_path)
    return ''.join(header), config


def _model(config, model_name: Optional[str], config_path: str):
    """The named model of the config, or its only model when no name is given."""
    models = config.model_config_list.config
    if model_name is None and len(models) == 1:
        return models[0]
    for model in models:
        if model.name == model_name:
            return model
    known = ', '.join(repr(m.name) for m in models) or 'none'
    if model_name is None:
        raise ValueError(f'{config_path} serves several models ({known}): name one with --model-name')
    raise ValueError(f'{config_path}: no model named {model_name!r} (models: {known})')


def model_name_in(config_path: str, model_name: Optional[str] = None) -> str:
    """`model_name` if the config serves it; without one, the config's only model."""
    _, config = _read(config_path)
    return _model(config, model_name, config_path).name


def loaded_versions(config_path: str, model_name: Optional[str] = None) -> FrozenSet[int]:
    """The versions the model's `specific` policy loads (empty for latest/all policies)."""
    _, config = _read(config_path)
    policy = _model(config, model_name, config_path).model_version_policy
    return frozenset(policy.specific.versions) if policy.HasField('specific') else frozenset()


def read_labels(config_path: str, model_name: Optional[str] = None) -> Dict[str, int]:
    """The model's version labels, e.g. {'stable': 3, 'canary': 4}."""
    _, config = _read(config_path)
    return dict(_model(config, model_name, config_path).version_labels)


def set_labels(config_path: str, stable: int, canary: Optional[int] = None,
               model_name: Optional[str] = None, *, staged: bool = True) -> FrozenSet[int]:
    """Label `stable` (and `canary`, or remove that label when None) and load only those versions.

    Returns the versions that must load before the labels can move: empty when
    the labels were written, otherwise the labels are unchanged and the same
    call is to be repeated once the servers report those versions AVAILABLE.
    """
    wanted = {STABLE_LABEL: stable}
    if canary is not None:
        wanted[CANARY_LABEL] = canary
    for label, version in ((STABLE_LABEL, stable), (CANARY_LABEL, canary)):
        if version is None and label == CANARY_LABEL:
            continue
        _check_version(label, version)
    return write_labels(config_path, wanted, model_name, staged=staged)


def _check_version(label: str, version) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version <= 0:
        raise ValueError(f'{label} version must be a positive integer, got {version!r}')


def write_labels(config_path: str, wanted: Mapping[str, int], model_name: Optional[str] = None, *,
                 staged: bool = True, keep: Iterable[int] = ()) -> FrozenSet[int]:
    """Exactly the labels in `wanted` (others removed), and a policy loading exactly their versions
    and the versions in `keep` (so that the labels can move back without a load).

    Staged as `set_labels` is: while a label would move to (or appear on) a
    version not loaded yet, only the policy grows and the pending versions
    are returned.
    """
    for label, version in wanted.items():
        _check_version(label, version)
    header, config = _read(config_path)
    model = _model(config, model_name, config_path)
    current = dict(model.version_labels)
    policy = model.model_version_policy
    loaded = set(policy.specific.versions) if policy.HasField('specific') else set()
    pending = frozenset(v for label, v in wanted.items() if current.get(label) != v and v not in loaded)

    if staged and pending:
        versions = loaded | set(wanted.values()) | set(current.values())
        labels = current
    else:
        versions = set(wanted.values()) | set(keep)
        labels = dict(wanted)
        pending = frozenset()
    policy.Clear()
    policy.specific.versions.extend(sorted(versions))
    model.version_labels.clear()
    model.version_labels.update(labels)
    write_atomically(config_path, header + text_format.MessageToString(config))
    return pending


NEW_CONFIG_HEADER = """# ModelServerConfig written by `taxi-pipeline models` (the release registry):
# TF Serving and `taxi-pipeline serve --model-config-file` load exactly the
# versions labelled here. Change it with `taxi-pipeline models promote|rollback`,
# which records every change in ML Metadata, not by hand.
"""


def create_config(config_path: str, model_name: str, base_path: str) -> None:
    """A config serving `model_name` from `base_path` with no versions yet; refuses to replace a file."""
    if os.path.exists(config_path):
        raise ValueError(f'{config_path} exists already')
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(name=model_name, base_path=base_path, model_platform='tensorflow')
    model.model_version_policy.specific.SetInParent()
    write_atomically(config_path, NEW_CONFIG_HEADER + text_format.MessageToString(config))
