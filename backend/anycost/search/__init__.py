"""Sub-generators chosen by latency measured on this machine.

- ``latency``: per-layer lookup table of render times, cached per architecture and machine,
  fitted and checked against whole renders;
- ``space``: the sub-generators a model can run (flexible per-layer widths, uniform ratios,
  or resolution only) and the evolution's moves within them;
- ``consistency``: how faithfully a sub-generator reproduces the full generator;
- ``evolution``: the evolutionary search per latency budget;
- ``table``: the JSON table budget → configuration (and the published Anycost files);
- ``preview``: choosing the service's preview sub-generator from a table;
- ``run``: one search from a model name to a cached table (``anycost search``).

See ``docs/search.md``.
"""
