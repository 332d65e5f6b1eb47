"""Sub-generators searched for by latency measured on this machine, and how faithful each is.

- ``latency``: per-layer lookup table of render times, cached per architecture and machine,
  fitted and checked against whole renders;
- ``space``: the sub-generators a model can run (flexible per-layer widths, uniform ratios,
  or resolution only) and the evolution's moves within them;
- ``consistency``: how faithfully a sub-generator reproduces the full generator;
- ``evolution``: the evolutionary search per latency budget;
- ``table``: the JSON table budget → configuration (and the published Anycost files);
- ``cache``: where latencies and tables are kept (and reading back the one for a model here);
- ``budget``: the one rule for when a sub-generator fits a latency budget;
- ``run``: one search from a model name to a cached table (``anycost search``).

Choosing the preview from all this is ``editing.preview_choice``; nothing here imports ``editing``.
See ``docs/search.md``.
"""
