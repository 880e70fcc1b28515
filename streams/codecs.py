"""Faust codecs that put our Avro single-object encoding on internal and output topics.

One codec per record type, registered as ``avro:<full name>``, so a topic declared with
``value_serializer=codec_name("SituationEvent")`` writes bytes any Avro implementation can read
and refuses to write a record that breaks its schema.

Partner input topics do not use these codecs: a value that fails to deserialize inside Faust is
acked and crashes the agent, so workers read partner topics with ``value_serializer="raw"`` and
call :func:`schemas.codec.decode` inside their per-event ``try``, dead-lettering failures.
"""

from __future__ import annotations

from typing import Any, Final

from faust.serializers import codecs as faust_codecs
from faust.types.codecs import CodecT

from schemas.codec import decode, default_catalog, encode

__all__ = ["CODEC_PREFIX", "AvroSingleObjectCodec", "codec_name", "register_avro_codecs"]

CODEC_PREFIX: Final[str] = "avro:"


class AvroSingleObjectCodec(faust_codecs.Codec):
    """Encodes mappings as ``full_name`` and decodes only payloads of that type.

    ``full_name`` travels in ``kwargs`` because Faust's ``Codec.clone`` (used when codecs are
    chained with ``|``) rebuilds a codec from its keyword arguments.
    """

    def __init__(
        self, children: tuple[CodecT, ...] | None = None, *, full_name: str, **kwargs: Any
    ) -> None:
        resolved = default_catalog().full_name(full_name)
        super().__init__(children=children, full_name=resolved, **kwargs)
        self.full_name: str = resolved

    def _dumps(self, obj: Any) -> bytes:
        # Anything but a fitting mapping raises CodecError("schema_violation") naming the field.
        return encode(self.full_name, obj)

    def _loads(self, s: bytes) -> Any:
        return decode(s, expected=self.full_name).record


def codec_name(full_name: str) -> str:
    """Registry name of the codec for a type; short names ("SituationEvent") are accepted."""
    return CODEC_PREFIX + default_catalog().full_name(full_name)


def register_avro_codecs() -> None:
    """Register one codec per current record type; calling it again changes nothing."""
    for full_name in default_catalog().record_names():
        name = codec_name(full_name)
        existing = faust_codecs.codecs.get(name)
        if isinstance(existing, AvroSingleObjectCodec) and existing.full_name == full_name:
            continue
        faust_codecs.register(name, AvroSingleObjectCodec(full_name=full_name))
