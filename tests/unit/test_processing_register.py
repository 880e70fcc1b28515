"""The register of processing (issue 24): every catalog topic has an entry, retention comes
from the topic's configuration, and the committed document is what the catalog gives now."""

from __future__ import annotations

from pathlib import Path

import pytest

from topics import catalog
from topics.catalog import CATALOG
from topics.processing import PROCESSING, register_markdown, retention

pytestmark = pytest.mark.unit

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "processing-register.md"


def test_every_catalog_topic_has_exactly_one_entry() -> None:
    assert sorted(PROCESSING) == sorted(spec.name for spec in CATALOG)


def test_retention_is_read_from_the_topic_configuration() -> None:
    assert [retention(spec) for spec in (
        catalog.OPERATOR_ACTIONS, catalog.SIGN_INS, catalog.DEAD_LETTERS, catalog.INCIDENTS,
        catalog.ACTION_RECEIPTS, catalog.SESSIONS)] == [
        "5 years", "1 year", "30 days", "7 days", "1 hour",
        "compacted: the latest record per key until a tombstone deletes it"]


def test_the_committed_register_is_the_generated_one() -> None:
    # if this fails: python -m topics.processing docs/processing-register.md
    assert DOCUMENT.read_text(encoding="utf-8") == register_markdown()
