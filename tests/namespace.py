"""A namespace named when a test module is imported, so the module's constants can name its
topics; the namespace itself (topics, wards, assets, workers, records) is bench.harness's."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from bench.harness import Namespace
from topics.catalog import TopicCatalog, TopicSpec


@dataclass(frozen=True)
class NamespacePlan:
    """A namespace nested in the test session's prefix; `create` makes it real on the broker
    (in a module-scoped fixture)."""

    label: str
    prefix: str

    @classmethod
    def new(cls, label: str) -> NamespacePlan:
        return cls(label, f"{TopicCatalog.from_env().prefix}{label}-{uuid.uuid4().hex[:6]}.")

    def name(self, spec: TopicSpec) -> str:
        return self.prefix + spec.name

    def create(self, bootstrap: str) -> Namespace:
        namespace = Namespace(bootstrap, self.prefix)
        try:
            namespace.setup()
        except RuntimeError as error:
            pytest.fail(str(error))
        return namespace
