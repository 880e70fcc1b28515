"""Every place where cityops changes the behaviour of aiokafka or Faust internals.

Each module here touches framework internals, checks at install time that what it touches is
what it was written against (version range and the touched code itself), and has its line in
docs/runtime.md, the runtime contract: `poison` (one unreadable record never stops a
partition), `offsets` (never commit past a record that was not processed), `fast_delivery`
(Faust's per-message delivery without four tasks), and `versions`, the tested range they share.
The rest of `streams/` uses public APIs only.
"""
