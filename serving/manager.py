"""Which versions of a model are loaded, and which one answers a request.

`ModelManager` watches a model's base directory the way TF Serving's file
system source does, with the guarantees the issue asks for:

- a version directory is a candidate only once it has `saved_model.pb` and
  none of its files has changed for `settle_seconds` (the Pusher copies files
  one by one, saved_model.pb last, so a version still being written, even a
  slow or stalled copy of its last file, is not loaded);
- a new version is loaded and warmed up before it is published; the versions
  it replaces are unloaded only after that (availability preserving);
- a version that fails to load is reported in the status (state END with the
  error) and excluded from the version policy, so it never displaces the
  serving version; it is retried only when its files change.

Requests resolve a version (latest, specific, or label) against an immutable
snapshot of the loaded servables, so a swap never fails an in-flight request.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import tensorflow as tf

from serving import servable as servable_lib
from serving.errors import invalid, not_found

log = logging.getLogger(__name__)

START, LOADING, AVAILABLE, UNLOADING, END = 'START', 'LOADING', 'AVAILABLE', 'UNLOADING', 'END'


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """TF Serving's model_version_policy: latest N, all, or specific versions."""

    latest: int = 1
    specific: Tuple[int, ...] = ()
    all: bool = False

    def select(self, versions: List[int]) -> List[int]:
        if self.all:
            return sorted(versions)
        if self.specific:
            return sorted(v for v in versions if v in self.specific)
        return sorted(versions)[-self.latest:]

    @classmethod
    def parse(cls, text: str) -> 'VersionPolicy':
        """`latest:N`, `all`, or `specific:V1,V2` (the CLI's spelling)."""
        kind, _, arg = text.partition(':')
        try:
            if kind == 'latest':
                policy = cls(latest=int(arg or 1))
                if policy.latest < 1:
                    raise ValueError
                return policy
            if kind == 'all' and not arg:
                return cls(all=True)
            if kind == 'specific':
                return cls(specific=tuple(int(v) for v in arg.split(',')))
        except ValueError:
            pass
        raise ValueError(f'version policy {text!r}: use latest:N, all, or specific:V1,V2')


@dataclasses.dataclass
class VersionStatus:
    state: str
    error_code: str = 'OK'
    error_message: str = ''


def _fingerprint(path: str) -> Optional[Tuple]:
    """What the version's files look like now; None if it has no saved_model.pb yet."""
    if not tf.io.gfile.exists(os.path.join(path, 'saved_model.pb')):
        return None
    entries = []
    for root, _, files in tf.io.gfile.walk(path):
        for name in files:
            stat = tf.io.gfile.stat(os.path.join(root, name))
            entries.append((os.path.relpath(os.path.join(root, name), path), stat.length, stat.mtime_nsec))
    return tuple(sorted(entries))


class ModelManager:
    """The loaded versions of one model, kept in line with its base directory."""

    def __init__(self, name: str, base_path: str, policy: VersionPolicy = VersionPolicy(),
                 labels: Optional[Mapping[str, int]] = None, warm_up: bool = True, batching=None,
                 on_batch: Optional[Callable[[int], None]] = None,
                 on_loaded: Optional[Callable[[servable_lib.Servable, float, int], None]] = None,
                 on_unloaded: Optional[Callable[[servable_lib.Servable], None]] = None,
                 on_failed: Optional[Callable[[int, str], None]] = None, settle_seconds: float = 2.0,
                 method_name_check: bool = False):
        self.name, self.base_path = name, base_path
        self.method_name_check = method_name_check
        self.policy = policy
        self.settle_seconds = settle_seconds
        self.labels: Dict[str, int] = dict(labels or {})
        self._warm_up = warm_up
        self._batching, self._on_batch = batching, on_batch
        self._on_loaded, self._on_unloaded, self._on_failed = on_loaded, on_unloaded, on_failed
        # Published state, replaced whole (never mutated) so readers need no lock.
        self._servables: Dict[int, servable_lib.Servable] = {}
        self._status: Dict[int, VersionStatus] = {}
        self._seen: Dict[int, Tuple] = {}  # version -> its files at the latest poll
        # version -> its directory's name. TF Serving reads a version from the name's digits and
        # loads the directory as named (file_system_storage_path_source.cc: ParseVersionNumber is
        # safe_strto64 of the name, AspireVersion joins the base path with the name as found), so
        # `00000123`, the layout of its own test models, is version 123.
        self._directories: Dict[int, str] = {}
        self._failed: Dict[int, Tuple] = {}  # version -> fingerprint that failed to load
        self._poll_lock = threading.Lock()

    # -- the watcher side ------------------------------------------------------

    def _stable_versions(self) -> List[int]:
        """Versions with a saved_model.pb and no file modified for settle_seconds."""
        try:
            names = tf.io.gfile.listdir(self.base_path)
        except tf.errors.OpError as e:
            log.warning('cannot list model base path %s: %s', self.base_path, e.message)
            return []
        stable, seen, directories = [], {}, {}
        for entry in sorted(names):
            entry = entry.rstrip('/')
            if not entry.isdigit():
                continue
            version = int(entry)
            if version in directories:  # `7` and `007`: our choice, the first name in order (logged)
                log.warning('version %d of %s is in both %s and %s; serving %s', version, self.name,
                            directories[version], entry, directories[version])
                continue
            directories[version] = entry
            try:
                fingerprint = _fingerprint(os.path.join(self.base_path, entry))
            except tf.errors.OpError as e:  # deleted while listed, unreadable: skip it this round
                log.warning('cannot read version %s of %s: %s', entry, self.name, e.message)
                continue
            if fingerprint is None:
                continue
            seen[version] = fingerprint
            newest = max(mtime for _, _, mtime in fingerprint)
            if time.time_ns() - newest >= self.settle_seconds * 1e9:
                stable.append(version)
        self._seen, self._directories = seen, directories
        return stable

    def poll(self) -> None:
        """One round: load what the policy wants, then unload what it dropped."""
        with self._poll_lock:
            stable = self._stable_versions()
            loadable = [v for v in stable if self._failed.get(v) != self._seen.get(v)]
            wanted = set(self.policy.select(loadable))
            for version in sorted(wanted - set(self._servables)):
                self._load(version)
            keep = wanted & set(self._servables)
            # Availability preserving: never unload the last serving version
            # while nothing wanted is available to replace it.
            if keep:
                for version in sorted(set(self._servables) - keep):
                    self._unload(version)

    def update(self, policy: VersionPolicy, labels: Mapping[str, int]) -> None:
        """A new policy and labels from the config; applied at the next poll."""
        with self._poll_lock:
            self.policy, self.labels = policy, dict(labels)

    @property
    def settling(self) -> bool:
        """Whether a version the policy wants is on disk but not complete yet."""
        present = [v for v in self._seen if self._failed.get(v) != self._seen[v]]
        return bool(set(self.policy.select(present)) - set(self._servables))

    def _set_status(self, version: int, status: VersionStatus) -> None:
        self._status = {**self._status, version: status}

    def _load(self, version: int) -> None:
        path = os.path.join(self.base_path, self._directories.get(version, str(version)))
        self._set_status(version, VersionStatus(LOADING))
        try:
            servable, seconds, replayed = servable_lib.load(self.name, version, path, warm=self._warm_up,
                                                          batching=self._batching, on_batch=self._on_batch,
                                                          method_name_check=self.method_name_check)
        except Exception as e:  # any failure must leave the serving versions alone
            message = f'{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ""}'
            log.error('model %s version %d failed to load: %s', self.name, version, message)
            self._failed[version] = self._seen.get(version)
            self._set_status(version, VersionStatus(END, 'UNKNOWN', f'Failed to load version {version}: {message}'))
            if self._on_failed:
                self._on_failed(version, message)
            return
        self._failed.pop(version, None)
        self._servables = {**self._servables, version: servable}
        self._set_status(version, VersionStatus(AVAILABLE))
        log.info('model %s version %d available (loaded in %.2f s, %d warm-up requests)',
                 self.name, version, seconds, replayed)
        if self._on_loaded:
            self._on_loaded(servable, seconds, replayed)

    def _unload(self, version: int) -> None:
        self._set_status(version, VersionStatus(UNLOADING))
        servable = self._servables[version]
        self._servables = {v: s for v, s in self._servables.items() if v != version}
        servable.close()
        self._set_status(version, VersionStatus(END))
        log.info('model %s version %d unloaded', self.name, version)
        if self._on_unloaded:
            self._on_unloaded(servable)

    def close(self) -> None:
        with self._poll_lock:
            for version in list(self._servables):
                self._unload(version)

    # -- the request side ------------------------------------------------------

    def resolve(self, version: Optional[int] = None, label: Optional[str] = None) -> servable_lib.Servable:
        servables, labels = self._servables, self.labels  # one consistent snapshot
        if label:
            if label not in labels:
                raise invalid(f'Unrecognized servable version label: {label}')
            version = labels[label]
        if version is not None:
            if version not in servables:
                raise not_found(f'Servable not found for request: Specific({self.name}, {version})')
            return servables[version]
        if not servables:
            raise not_found(f'Servable not found for request: Latest({self.name})')
        return servables[max(servables)]

    @property
    def available_versions(self) -> List[int]:
        return sorted(self._servables)

    def status(self, version: Optional[int] = None) -> Dict[int, VersionStatus]:
        status = self._status
        if version is not None:
            if version not in status:
                raise not_found(f'Could not find version {version} of model {self.name}')
            return {version: status[version]}
        if not status:
            raise not_found(f'Could not find any versions of model {self.name}')
        return dict(status)


class ModelRegistry:
    """All served models, by name; the servers' single entry point."""

    def __init__(self, managers: Mapping[str, ModelManager]):
        self._managers = dict(managers)

    def manager(self, name: str) -> ModelManager:
        try:
            return self._managers[name]
        except KeyError:
            raise not_found(f'Servable not found for request: Latest({name})') from None

    def resolve(self, name: str, version: Optional[int] = None, label: Optional[str] = None):
        return self.manager(name).resolve(version, label)

    def status(self, name: str, version: Optional[int] = None):
        if name not in self._managers:
            raise not_found(f'Could not find any versions of model {name}')
        return self._managers[name].status(version)

    def replace(self, managers: Mapping[str, ModelManager]) -> None:
        self._managers = dict(managers)

    @property
    def managers(self) -> List[ModelManager]:
        return list(self._managers.values())

    def poll(self) -> None:
        for manager in self.managers:
            try:
                manager.poll()
            except Exception:  # one model's storage trouble must not stall the others
                log.exception('polling model %s failed', manager.name)

    def close(self) -> None:
        for manager in self.managers:
            manager.close()

