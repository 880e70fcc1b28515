"""`cityops watch` on a broker without the situations topic says so instead of an empty board."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from tests.conftest import CITYOPS, ROOT

pytestmark = pytest.mark.integration


def refusal(topic: str, bootstrap: str) -> str:
    """What `cityops watch` prints on stderr when it cannot see the situations topic."""
    return (f"cityops watch: {topic} is not visible on {bootstrap}: it does not exist (run "
            "`cityops topics create`, or check CITYOPS_TOPIC_PREFIX) or this client's "
            "principal may not read it (check CITYOPS_SASL_USERNAME and the ACLs, "
            "docs/security.md)")


def test_watch_without_the_situations_topic_fails_clearly(broker: str) -> None:
    prefix = f"nowhere-{uuid.uuid4().hex[:6]}."
    env = {**os.environ, "CITYOPS_TOPIC_PREFIX": prefix}
    result = subprocess.run([*CITYOPS, "watch", "--once", "--bootstrap", broker], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == refusal(f"{prefix}city.situations.v1", broker)
