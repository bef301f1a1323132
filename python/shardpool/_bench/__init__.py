"""The machinery behind ``python -m shardpool bench`` (see ``shardpool.bench``).

- ``cases``: every measured operation, as setup and statement source, shared
  by both modes, with the group it is compared within.
- ``wallclock``: time per operation, rounds alternated, median and spread.
- ``instructions``: exact instruction counts under valgrind, and the targets.
- ``report``: the machine line, the tables, the chart and the JSON.
- ``references``: the hand-written pools shardpool is measured against.
"""
