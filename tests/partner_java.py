"""Records written by a non-Python client: tests/java/PartnerProducer.java on the official Java
kafka-clients (the broker's own jars in kafka-broker/libs), compiled once per test session."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from tests.conftest import ROOT

SOURCE = ROOT / "tests" / "java" / "PartnerProducer.java"
LIBS = ROOT / "kafka-broker" / "libs"
COMPRESSIONS = ("none", "gzip", "lz4", "snappy", "zstd")


@dataclass(frozen=True)
class JavaRecord:
    partition: int
    key: bytes
    value: bytes
    headers: Sequence[tuple[str, bytes]] = field(default_factory=tuple)

    def line(self) -> str:
        assert self.key and self.value, "the line format has no empty key or value"
        headers = "".join(f" {name}={data.hex()}" for name, data in self.headers)
        return f"{self.partition} {self.key.hex()} {self.value.hex()}{headers}"


@cache
def _classes() -> Path:
    javac = shutil.which("javac")
    if javac is None or not any(LIBS.glob("kafka-clients-*.jar")):
        raise RuntimeError("javac and kafka-broker/libs (cityops broker fetch) are needed")
    out = Path(tempfile.mkdtemp(prefix="partner-java-"))
    subprocess.run([javac, "-d", str(out), "-cp", f"{LIBS}/*", str(SOURCE)], check=True,
                   capture_output=True, timeout=300)
    return out


def java_send(bootstrap: str, topic: str, records: Iterable[JavaRecord],
              compression: str = "none", mode: str = "plain") -> None:
    """Send with the Java producer (acks=all, idempotent; `mode` plain, commit or abort);
    raises if the producer did not confirm every record."""
    assert compression in COMPRESSIONS, compression
    lines = [record.line() for record in records]
    result = subprocess.run(
        ["java", "-cp", f"{_classes()}:{LIBS}/*", "PartnerProducer", bootstrap, topic,
         compression, mode],
        input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0 or result.stdout.strip() != f"sent {len(lines)}":
        raise RuntimeError(f"PartnerProducer failed ({result.returncode}): "
                           f"{result.stdout}{result.stderr[-3000:]}")
