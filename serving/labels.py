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

import argparse
import os
import sys
import tempfile
from typing import Dict, FrozenSet, List, Optional

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving import CANARY_LABEL, MODEL_NAME, STABLE_LABEL, protos


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


def _model(config, model_name: str, config_path: str):
    models = config.model_config_list.config
    for model in models:
        if model.name == model_name:
            return model
    known = ', '.join(repr(m.name) for m in models) or 'none'
    raise ValueError(f'{config_path}: no model named {model_name!r} (models: {known})')


def _write_atomically(config_path: str, text: str) -> None:
    """Readers (TF Serving, kubectl) see the old file or the new one, never half of one."""
    directory = os.path.dirname(os.path.abspath(config_path))
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(config_path) + '.')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_path, os.stat(config_path).st_mode & 0o7777)  # mkstemp makes it 0600
        os.replace(tmp_path, config_path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def read_labels(config_path: str, model_name: str = MODEL_NAME) -> Dict[str, int]:
    """The model's version labels, e.g. {'stable': 3, 'canary': 4}."""
    _, config = _read(config_path)
    return dict(_model(config, model_name, config_path).version_labels)


def set_labels(config_path: str, stable: int, canary: Optional[int] = None,
               model_name: str = MODEL_NAME, *, staged: bool = True) -> FrozenSet[int]:
    """Label `stable` (and `canary`, or remove that label when None) and load only those versions.

    Returns the versions that must load before the labels can move: empty when
    the labels were written, otherwise the labels are unchanged and the same
    call is to be repeated once the servers report those versions AVAILABLE.
    """
    for label, version in ((STABLE_LABEL, stable), (CANARY_LABEL, canary)):
        if version is None and label == CANARY_LABEL:
            continue
        if isinstance(version, bool) or not isinstance(version, int) or version <= 0:
            raise ValueError(f'{label} version must be a positive integer, got {version!r}')
    header, config = _read(config_path)
    model = _model(config, model_name, config_path)

    wanted = {STABLE_LABEL: stable}
    if canary is not None:
        wanted[CANARY_LABEL] = canary
    current = dict(model.version_labels)
    policy = model.model_version_policy
    loaded = set(policy.specific.versions) if policy.HasField('specific') else set()
    pending = frozenset(v for label, v in wanted.items() if current.get(label) != v and v not in loaded)

    if staged and pending:
        versions = loaded | set(wanted.values()) | set(current.values())
        labels = current
    else:
        versions = set(wanted.values())
        labels = wanted
        pending = frozenset()
    policy.Clear()
    policy.specific.versions.extend(sorted(versions))
    model.version_labels.clear()
    model.version_labels.update(labels)
    _write_atomically(config_path, header + text_format.MessageToString(config))
    return pending


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='serving-labels',
        description='Point the stable/canary labels of a TF Serving models.config at model versions.')
    parser.add_argument('--config', required=True, help='ModelServerConfig text proto, e.g. serving/config/models.config')
    parser.add_argument('--stable', type=int, required=True, help='version for the stable label')
    parser.add_argument('--canary', type=int, help='version for the canary label (omit to remove it)')
    parser.add_argument('--model-name', default=MODEL_NAME)
    parser.add_argument('--direct', action='store_true',
                        help='write the final state in one step; only for a config no server has loaded yet')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    return run(parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    try:
        pending = set_labels(args.config, args.stable, args.canary, args.model_name, staged=not args.direct)
        labels = read_labels(args.config, args.model_name)
    except (ValueError, OSError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    if pending:
        versions = ', '.join(map(str, sorted(pending)))
        print(f'staged: {args.config} now also loads version(s) {versions}; labels unchanged.\n'
              f'TF Serving moves a label only to a loaded version. Once every replica lists {versions} '
              f'as AVAILABLE (GET /v1/models/{args.model_name}), run the same command again.')
    else:
        print(f'{args.model_name}: ' + ', '.join(f'{k}={v}' for k, v in sorted(labels.items())))
    return 0


if __name__ == '__main__':
    sys.exit(main())
