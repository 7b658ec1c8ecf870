"""A gate that fails the run when ExampleValidator found anomalies, or when the
drift check found drift and its policy blocks.

ExampleValidator only records anomalies (and a `blessed` property); nothing
downstream reads them, so a TFX pipeline trains on bad data unless something
stops it. This component does, by failing its execution: every runner
(LocalDagRunner, KFP, Vertex) then stops the nodes that depend on it. The
drift check records its findings and never fails itself, so they stay in ML
Metadata when the gate stops the run.

- `gate`: the errors it raises and the readable lines they carry, importing no TFX (the CLI maps
  them to exit codes);
- `executor`: what the gate does with its artifacts;
- `component`: the TFX component `AnomaliesGate`.

This file imports nothing, so that the plain module stays free of TFX.
"""
