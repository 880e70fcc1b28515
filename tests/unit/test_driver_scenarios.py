"""Each named scenario of `cityops simulate`, played as `cityops simulate --scenario NAME
--count 0 --seed 11` plays it (the command's own feed, captured instead of sent), through the
topology without a broker (streams/test_driver.py): exactly its wards end at the level it
promises, whether the worker evaluates a ward after every event or once per batch.

Moved here from tests/e2e/test_scenarios.py (issue 17, part 5), which keeps the board a
real worker and `cityops watch --once` show for the flood scenario.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from cityops.scenarios import SCENARIOS
from cityops.simulate import run_simulate
from streams.test_driver import TopologyTestDriver
from tests.pipeline_scenario import Sent, through_driver
from tests.unit.test_produce import FakeSender

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 21, 40, 13, tzinfo=UTC)


def simulated(name: str) -> list[Sent]:
    """What `cityops simulate --scenario NAME --count 0 --seed 11` sends at NOW."""
    sender = FakeSender()
    out, err = io.StringIO(), io.StringIO()
    code = run_simulate("unused:9092", 11, 20.0, None, 0, name, False, False,
                        sender_factory=lambda bootstrap: sender, out=out, err=err,
                        wall_clock=lambda: NOW)
    assert (code, err.getvalue(), sender.closed) == (0, "", True)
    return [Sent(schema, record) for schema, record in sender.sent]


def raised_levels(driver: TopologyTestDriver) -> dict[str, str]:
    """Each kelurahan's latest situation level, where it is not NORMAL (what the e2e test read
    from the situations topic)."""
    latest = {s["scope_code"]: s for s in driver.outputs.situations}
    return {code: s["level"] for code, s in latest.items()
            if s["scope"] == "KELURAHAN" and s["level"] != "NORMAL"}


@pytest.mark.parametrize("batch", [1, 1_000])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_brings_exactly_its_wards_to_the_promised_level(name: str, batch: int) -> None:
    sent = simulated(name)
    assert len(sent) == {"flood": 108, "cabinet-power-loss": 36, "holiday-waste-surge": 116,
                         "night-accidents": 160}[name]
    driver = through_driver(sent, NOW, batch=batch)
    assert driver.outputs.dead_letters == []
    assert raised_levels(driver) == dict(SCENARIOS[name].expected_wards)
