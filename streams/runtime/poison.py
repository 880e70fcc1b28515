"""One record the client cannot parse never stops a partition (issue 17).

Without this, a record batch aiokafka cannot parse raises out of its fetcher every time it is
read, through Faust's consumer loop, and crashes the worker; a restarted worker reads it again
and crashes again (reproduced, docs/runtime.md). Where it raises, aiokafka 0.14:

- `PartitionRecords._unpack_records` (aiokafka/consumer/fetcher.py), run lazily by
  `FetchResult.getall` inside `Fetcher.fetched_records`:
  - a CRC mismatch: `CorruptRecordException("Invalid CRC - <tp>")`, its own check;
  - `for record in next_batch`, in the C record batch (`_crecords/default_records.pyx`):
    `UnsupportedCodecError` for a codec whose library is missing or that does not exist,
    whatever the decompressor raises on a corrupt payload (`gzip.BadGzipFile`, cramjam's
    errors), `UnicodeDecodeError` for a header name that is not UTF-8;
- `MemoryRecords.next_batch`, for a batch header it cannot read.

Faust runs aiokafka in its consumer thread (`faust/transport/drivers/aiokafka.py`
`_fetch_records`), so the exception reaches `Consumer._drain_messages` through `getmany`,
which logs "Drain messages raised", and the Fetcher service crashes the worker. The
partition's position never moves past the batch, so every worker that reads it crashes.

The fence, installed by `install()`:

1. `PartitionRecords._unpack_records` is replaced by the same loop with each batch in a try:
   a batch that fails is reported (topic, partition, the offsets it covers from the first not
   yet returned, its raw bytes, the error) and the partition's next fetch offset moves past it,
   so the fetch goes on with the next batch. The batches aiokafka itself steps over (control
   batches: transaction markers; batches of aborted transactions under read_committed) are
   reported too: they are offsets holding no record for the application.
2. The fetcher's `MemoryRecords` is wrapped so the raw bytes of the failed batch are at hand.
3. Faust's worker consumer reads with `isolation.level=read_committed` (Faust sets it only
   under exactly_once): a partner's aborted transaction is never seen.
4. On the worker's event loop, every reported range is booked in Faust's consumer as
   acknowledged (`book_skipped`), so commits pass it. streams/runtime/offsets.py deliberately
   books no offset gaps (they meant lost records there) and heals a hole by seeking back; a
   transaction marker is such a hole, so before this a transactional partner's records were
   replayed every few seconds, forever. An unparseable batch is booked only after the
   callback (the dead letter) has been handed to the producer, which Faust flushes before it
   commits: at-least-once for dead letters. If the callback fails, nothing is booked, the hole
   is healed by a seek back and the batch is reported again.

The same batch reported again (a re-fetch after a seek or a rebalance) is dead-lettered once
per worker process (the last 10,000 are remembered); another worker taking the partition over
before the commit may dead-letter it once more.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import inspect
import logging
import struct
import textwrap
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.consumer import consumer as aiokafka_consumer
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.errors import CorruptRecordException, UnsupportedCodecError
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from streams.runtime.versions import require_tested

log = logging.getLogger(__name__)

#: sha256 (first 16 hex digits) of the source of what is replaced or re-implemented here.
EXPECTED_SOURCE = {
    "aiokafka PartitionRecords._unpack_records": "95caf6c3fa9930a0",
    "faust Consumer.ack": "582909f08d74616b",
}
#: Unparseable batches remembered per process, so a re-fetch is not dead-lettered twice.
REMEMBERED = 10_000
#: Bounded values of the `kind` of an unparseable batch (a metric label).
KINDS = ("crc_mismatch", "unsupported_codec", "invalid_utf8", "malformed")

_MARK = "_cityops_poison_fence"
_BATCH_OVERHEAD = 12  # baseOffset int64 + batchLength int32 before every batch


@dataclass(frozen=True, slots=True)
class Skipped:
    """Offsets [first_offset, next_offset) of a partition that hold no record to process."""

    topic: str
    partition: int
    first_offset: int
    next_offset: int
    #: "unparseable", "control_batch" (transaction markers) or "aborted_transaction"
    cause: str
    #: for unparseable batches: one of KINDS; the rest is empty otherwise
    kind: str = ""
    error_class: str = ""
    error: str = ""
    timestamp_ms: int | None = None
    #: the batch as fetched (Kafka's record batch format), when it could be had
    raw: bytes | None = None

    @property
    def unparseable(self) -> bool:
        return self.cause == "unparseable"

    def describe(self) -> str:
        last = self.next_offset - 1
        span = f"offset {self.first_offset}" if last == self.first_offset else (
            f"offsets {self.first_offset}-{last}")
        return (f"record batch at {span} of {self.topic}[{self.partition}] cannot be parsed "
                f"({self.kind}): {self.error_class}: {self.error}")


Sink = Callable[[Skipped], None]
_sink: Sink | None = None


def _report(skipped: Skipped) -> None:
    sink = _sink
    if skipped.unparseable:
        log.warning("%s; skipped", skipped.describe())
    if sink is None:
        return
    try:
        sink(skipped)
    except Exception:  # the fetch must go on whatever the sink does
        log.exception("reporting %r failed", skipped)


def kind_of(error: BaseException) -> str:
    if isinstance(error, UnsupportedCodecError):
        return "unsupported_codec"
    if isinstance(error, UnicodeDecodeError):
        return "invalid_utf8"
    return "malformed"


# -- aiokafka: the fetcher ---------------------------------------------------------------------

_MEMORY_RECORDS: Any = aiokafka_fetcher.MemoryRecords


class _TrackedMemoryRecords:
    """aiokafka's MemoryRecords, remembering where the batch it last handed out lies in the
    fetched bytes (so a batch that cannot be parsed is dead-lettered as it was fetched)."""

    __slots__ = ("_data", "_end", "_inner", "_start")

    def __init__(self, data: Any) -> None:
        self._inner = _MEMORY_RECORDS(data)
        self._data = data
        self._start = self._end = 0

    def size_in_bytes(self) -> int:
        size: int = self._inner.size_in_bytes()
        return size

    def has_next(self) -> bool:
        more: bool = self._inner.has_next()
        return more

    def next_batch(self) -> Any:
        self._start = self._end
        if len(self._data) - self._start >= _BATCH_OVERHEAD:
            length = struct.unpack_from(">i", self._data, self._start + 8)[0]
            self._end = min(len(self._data), self._start + _BATCH_OVERHEAD + max(0, length))
        return self._inner.next_batch()

    def raw(self) -> bytes:
        return bytes(self._data[self._start:self._end])

    def following_base_offset(self) -> int | None:
        """Base offset of the batch after the last one handed out, if this fetch has it."""
        if len(self._data) - self._end >= _BATCH_OVERHEAD:
            offset: int = struct.unpack_from(">q", self._data, self._end)[0]
            return offset
        return None


def _raw_header_span(raw: bytes) -> tuple[int, int] | None:
    """(base offset, next offset) read straight from a v2 batch header, if it looks like one."""
    if len(raw) < 27 or raw[16] != 2:
        return None
    base, last_delta = struct.unpack_from(">q", raw, 0)[0], struct.unpack_from(">i", raw, 23)[0]
    return (base, base + last_delta + 1) if last_delta >= 0 else None


def _skip_batch(partition_records: Any, batch: Any, kind: str, error: BaseException) -> None:
    """Report the rest of `batch` as unparseable and move the fetch position past it."""
    records = partition_records._records
    tracked = isinstance(records, _TrackedMemoryRecords)
    first = max(partition_records.next_fetch_offset, batch.base_offset)
    next_offset = batch.next_offset
    # A CRC mismatch may be in the header too: trust the next batch of the fetch over it.
    following = records.following_base_offset() if tracked else None
    if following is not None and first < following < next_offset:
        next_offset = following
    next_offset = max(next_offset, first + 1)
    try:
        timestamp: int | None = batch.first_timestamp
    except Exception:  # legacy (v0/v1) batches have none
        timestamp = None
    partition_records.next_fetch_offset = next_offset
    tp = partition_records._tp
    _report(Skipped(tp.topic, tp.partition, first, next_offset, "unparseable", kind,
                    type(error).__name__, str(error)[:500], timestamp,
                    records.raw() if tracked else None))


def _skip_unreadable(partition_records: Any, error: BaseException) -> None:
    """`next_batch()` itself failed: skip what the raw header claims, else one offset."""
    records = partition_records._records
    raw = records.raw() if isinstance(records, _TrackedMemoryRecords) else b""
    first = partition_records.next_fetch_offset
    span = _raw_header_span(raw)
    next_offset = span[1] if span is not None and span[1] > first else first + 1
    partition_records.next_fetch_offset = next_offset
    tp = partition_records._tp
    _report(Skipped(tp.topic, tp.partition, first, next_offset, "unparseable", "malformed",
                    type(error).__name__, str(error)[:500], None, raw or None))


def _fenced_unpack_records(self: Any) -> Iterator[Any]:
    """aiokafka 0.14's `PartitionRecords._unpack_records`, one batch at a time in a try."""
    tp = self._tp
    records = self._records
    while records.has_next():
        try:
            next_batch = records.next_batch()
        except Exception as error:
            _skip_unreadable(self, error)
            return  # where the next batch starts is unknown: the next fetch starts after it
        if next_batch is None:
            return
        try:
            if self._check_crcs and not next_batch.validate_crc():
                _skip_batch(self, next_batch, "crc_mismatch",
                            CorruptRecordException(f"Invalid CRC - {tp}"))
                continue

            if (self._isolation_level == aiokafka_fetcher.READ_COMMITTED
                    and next_batch.producer_id is not None):
                self._consume_aborted_up_to(next_batch.base_offset)
                if next_batch.is_control_batch and self._contains_abort_marker(next_batch):
                    self._aborted_producers.discard(next_batch.producer_id)
                if (next_batch.is_transactional
                        and next_batch.producer_id in self._aborted_producers):
                    _report(Skipped(tp.topic, tp.partition, next_batch.base_offset,
                                    next_batch.next_offset, "aborted_transaction"))
                    self.next_fetch_offset = next_batch.next_offset
                    continue

            if next_batch.is_control_batch:
                _report(Skipped(tp.topic, tp.partition, next_batch.base_offset,
                                next_batch.next_offset, "control_batch"))
                self.next_fetch_offset = next_batch.next_offset
                continue

            for record in next_batch:
                if record.offset < self.next_fetch_offset:
                    continue
                consumer_record = self._consumer_record(tp, record)
                self.next_fetch_offset = record.offset + 1
                yield consumer_record
        except Exception as error:
            _skip_batch(self, next_batch, kind_of(error), error)
            continue
        self.next_fetch_offset = next_batch.next_offset


# -- Faust: read_committed and booking ---------------------------------------------------------

def _wrap_create_worker_consumer(original: Any) -> Any:
    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._isolation_level = "read_committed"  # read by AIOKafkaConsumer.start()
        return consumer

    return create_worker_consumer


def book_skipped(consumer: Any, tp: TP, first: int, next_offset: int) -> int:
    """Book offsets [first, next_offset) of an assigned partition as acknowledged, as Faust's
    `Consumer.ack` books a processed record's offset. Returns how many were booked."""
    if tp not in consumer.assignment() or not consumer.app.topics.acks_enabled_for(tp.topic):
        return 0
    booked = 0
    with ack_lock:
        committed = consumer._committed_offset.get(tp)
        acked_index = consumer._acked_index[tp]
        acked = consumer._acked[tp]
        for offset in range(first if committed is None else max(first, committed), next_offset):
            if offset not in acked_index:
                acked_index.add(offset)
                acked.append(offset)
                booked += 1
        consumer._n_acked += booked
        notify(consumer._waiting_for_ack)
    return booked


class Fence:
    """Receives skipped ranges from any consumer thread and settles them on the app's loop."""

    def __init__(self, app: faust.App,
                 on_unparseable: Callable[[Skipped], Awaitable[None]]) -> None:
        self.app = app
        self.loop = app.loop  # the worker's loop (install() runs on the main thread)
        self.on_unparseable = on_unparseable
        self._dead_lettered: OrderedDict[tuple[str, int, int], asyncio.Future[None]] = (
            OrderedDict())
        self._running: set[asyncio.Task[None]] = set()  # strong references until done
        #: partitions read by the batch hop's own consumer (not Faust's): nothing to book,
        #: its checkpoint commits the consumer's position once `settle()` returned
        self.hop_topics: frozenset[str] = frozenset()
        self._unsent: set[tuple[str, int]] = set()

    def __call__(self, skipped: Skipped) -> None:
        self.loop.call_soon_threadsafe(self._settle, skipped)

    def _settle(self, skipped: Skipped) -> None:
        if skipped.unparseable:
            task = self.loop.create_task(self._dead_letter_then_book(skipped))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        else:
            self._book(skipped)

    async def _dead_letter_then_book(self, skipped: Skipped) -> None:
        key = (skipped.topic, skipped.partition, skipped.first_offset)
        sent = self._dead_lettered.get(key)
        if sent is None or (sent.done() and (sent.cancelled() or sent.exception())):
            sent = self._dead_lettered[key] = asyncio.ensure_future(
                self.on_unparseable(skipped))
            while len(self._dead_lettered) > REMEMBERED:
                self._dead_lettered.popitem(last=False)
        try:
            await asyncio.shield(sent)
        except Exception:
            log.exception("dead letter for %s not sent; not booked (the partition is read "
                          "again from its committed offset)", skipped.describe())
            if skipped.topic in self.hop_topics:
                self._unsent.add((skipped.topic, skipped.partition))
            return
        self._book(skipped)

    async def settle(self) -> set[tuple[str, int]]:
        """Wait until every reported range has its dead letter sent or failed; the partitions
        of the batch hop whose dead letter failed since the last call (`Checkpoint.commit`)."""
        await asyncio.sleep(0)  # reports made on this loop arrive through call_soon_threadsafe
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)
            await asyncio.sleep(0)
        unsent, self._unsent = self._unsent, set()
        return unsent

    def _book(self, skipped: Skipped) -> None:
        if skipped.topic in self.hop_topics:
            return
        try:
            book_skipped(self.app.consumer, TP(skipped.topic, skipped.partition),
                         skipped.first_offset, skipped.next_offset)
        except Exception:
            log.exception("booking %r failed", skipped)


# -- install -----------------------------------------------------------------------------------

def _digest(module: Any, qualname: str) -> str:
    """Digest of a method's source as its module's file has it (not as wrapped at run time:
    streams/runtime/offsets.py wraps Consumer.ack before this runs)."""
    source = inspect.getsource(module)
    class_name, method = qualname.split(".")
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == method:
                    text = textwrap.dedent(ast.get_source_segment(source, item, padded=True)
                                           or "")
                    return hashlib.sha256(text.encode()).hexdigest()[:16]
    return "missing"


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise RuntimeError(f"{what}: re-check streams/runtime/poison.py and docs/runtime.md "
                           "against the installed aiokafka/Faust")


def check() -> None:
    """Raise unless the installed aiokafka and Faust are what this module was written for."""
    require_tested("streams/runtime/poison.py")
    if getattr(aiokafka_fetcher.PartitionRecords, _MARK, False):
        return
    _require(_digest(aiokafka_fetcher, "PartitionRecords._unpack_records")
             == EXPECTED_SOURCE["aiokafka PartitionRecords._unpack_records"],
             "aiokafka PartitionRecords._unpack_records changed")
    _require(_digest(faust_consumer, "Consumer.ack") == EXPECTED_SOURCE["faust Consumer.ack"],
             "faust Consumer.ack changed (book_skipped re-implements its booking)")
    _require("MemoryRecords(part_data[-1])"
             in inspect.getsource(aiokafka_fetcher.Fetcher._proc_fetch_request),
             "aiokafka Fetcher._proc_fetch_request no longer builds MemoryRecords")
    _require("isolation_level=self._isolation_level"
             in inspect.getsource(aiokafka_consumer.AIOKafkaConsumer.start),
             "aiokafka AIOKafkaConsumer.start no longer reads _isolation_level")
    _require("isolation_level=isolation_level" in inspect.getsource(
        faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer),
        "faust AIOKafkaConsumerThread._create_worker_consumer changed")
    for name in ("_committed_offset", "_acked", "_acked_index", "_n_acked",
                 "_waiting_for_ack"):
        _require(f"self.{name}" in inspect.getsource(faust_consumer.Consumer),
                 f"faust Consumer.{name} is gone")


def install(app: faust.App, on_unparseable: Callable[[Skipped], Awaitable[None]]) -> Fence:
    """Fence this process's aiokafka consumers (idempotent) and send what they skip to `app`:
    `on_unparseable` is awaited for each unparseable batch (send the dead letter there), then
    the range is booked in the app's consumer. The last app installed receives everything."""
    global _sink
    check()
    fetcher_class = aiokafka_fetcher.PartitionRecords
    if not getattr(fetcher_class, _MARK, False):
        fetcher_class._unpack_records = _fenced_unpack_records
        aiokafka_fetcher.MemoryRecords = _TrackedMemoryRecords
        thread_class = faust_aiokafka.AIOKafkaConsumerThread
        thread_class._create_worker_consumer = (  # type: ignore[method-assign]
            _wrap_create_worker_consumer(thread_class._create_worker_consumer))
        setattr(fetcher_class, _MARK, True)
    fence = Fence(app, on_unparseable)
    _sink = fence
    return fence
