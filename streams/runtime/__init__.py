"""Every place where cityops changes the behaviour of aiokafka or Faust internals.

Each module here touches framework internals, checks at install time that what it touches is
what it was written against (version range and the touched code itself), and has its line in
docs/runtime.md, the runtime contract. `streams/faustpatch.py` and `streams/faust_offsets.py`
predate this package and move here later.
"""
