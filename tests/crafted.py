"""A record batch with a header name that is not UTF-8, written by a client as librdkafka (which
takes header names as raw bytes) could: built by aiokafka's batch builder with a placeholder
name, the name's bytes replaced and the CRC recomputed, then sent as is. The broker accepts
it (it decodes header names leniently); aiokafka's consumer cannot parse it."""

from __future__ import annotations

import asyncio
import struct

from aiokafka import AIOKafkaProducer
from aiokafka.record.util import calc_crc32c

PLACEHOLDER = b"HDRKEY"
NOT_UTF8 = b"\xff\xfeHDRK"


def non_utf8_header_batch(key: bytes, value: bytes) -> bytes:
    """The bytes of a one-record batch (offsets relative: the broker assigns them)."""
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    builder.append(0, timestamp=None, key=key, value=value,
                   headers=[(PLACEHOLDER.decode(), b"x")])
    data = bytearray(builder.build())
    at = data.find(PLACEHOLDER, 61)
    data[at:at + len(PLACEHOLDER)] = NOT_UTF8
    struct.pack_into(">I", data, 17, calc_crc32c(bytes(data[21:])))
    return bytes(data)


def send_non_utf8_header(bootstrap: str, topic: str, partition: int, key: bytes,
                         value: bytes) -> tuple[bytes, int]:
    """Send such a record; returns (the batch as sent, its offset). The broker sets the base
    offset (bytes 0-7) and the partition leader epoch (12-15); the rest is stored as sent."""

    async def send() -> tuple[bytes, int]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                    enable_idempotence=False)
        await producer.start()
        try:
            batch = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)  # counts the record
            data = non_utf8_header_batch(key, value)
            batch._buffer = bytearray(data)  # sent instead of what the builder would build
            batch.close()
            future = await producer.send_batch(batch, topic, partition=partition)
            metadata = await future
            return data, metadata.offset
        finally:
            await producer.stop()

    return asyncio.run(send())
