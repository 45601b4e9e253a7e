"""chanlog benchmarks, side by side with the ``eventsourcing`` library and raw sqlite3.

Run the whole suite (rewrites ``docs/benchmarks.md``, ``benchmarks/results/results.json``
and ``docs/img/scaling.png``)::

    pip install -e ".[bench]"
    python -m benchmarks

See ``python -m benchmarks --help`` for a quick smoke run and for running some cases only.
The method (interleaved repetitions, medians, per-pair ratios) is ADR 0016.
"""
