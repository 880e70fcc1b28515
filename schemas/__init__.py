"""Avro contract of the pipeline: the ``.avsc`` files in ``avro/`` (current versions), older
published versions in ``avro/history/``, and :mod:`schemas.codec`, the single-object codec every
producer and worker uses (``from schemas.codec import encode, decode``)."""
