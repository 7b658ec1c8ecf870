"""The Pusher: TFX's, with pushes that appear whole and leftovers of killed pushes quarantined.

- `push_destination`: the push itself (a temporary sibling renamed into place), finding what killed
  or unrecorded pushes left (`leftovers`), and moving it aside with a note (`quarantine`, `sweep`);
  importing no TFX (the CLI uses it);
- `executor`: TFX 1.16's Pusher executor, its copy replaced by `push_destination.push`, a sweep first;
- `component`: the TFX component `Pusher`.

This file imports nothing, so that `from components.pusher import push_destination` stays free of TFX.
"""
