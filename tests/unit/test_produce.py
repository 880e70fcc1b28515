"""``cityops produce`` and ``cityops simulate`` with a fake sender in place of Kafka."""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError

from cityops.produce import (
    EXIT_DELIVERY,
    EXIT_INVALID,
    EXIT_OK,
    json_depth,
    parse_json_text,
    parse_timestamp,
    run_produce,
    topic_name,
)
from cityops.scenarios import POWER_LOSS_CABINET
from cityops.simulate import merge_feed, plan_feed, run_simulate
from cityops.simulator import INCIDENT_SCHEMA, LIGHTING_SCHEMA, WASTE_SCHEMA, SimEvent

pytestmark = pytest.mark.unit

INCIDENTS = topic_name(INCIDENT_SCHEMA, {"source_system": "POLICE"})  # _incident()'s source
SHARED_INCIDENTS = topic_name(INCIDENT_SCHEMA)
PREFIX = os.environ["CITYOPS_TOPIC_PREFIX"]
CITIZEN_INCIDENTS = topic_name(INCIDENT_SCHEMA, {"source_system": "CITIZEN_APP"})
LIGHTING = topic_name(LIGHTING_SCHEMA)
WASTE = topic_name(WASTE_SCHEMA)
"""Topic names carry the test session's prefix (tests/conftest.py)."""
EVENT_ID = "6f1c1f0e-2b7a-4c55-9a3e-0d4f7f9b2a11"
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@dataclass
class Metadata:
    topic: str
    partition: int
    offset: int


@dataclass
class FakeFuture:
    metadata: Metadata
    error: Exception | None = None
    errbacks: list[Callable[[Exception], Any]] = field(default_factory=list)

    def get(self, timeout: float | None = None) -> Metadata:
        if self.error is not None:
            raise self.error
        return self.metadata

    def add_errback(self, fn: Callable[[Exception], Any]) -> FakeFuture:
        self.errbacks.append(fn)
        return self


@dataclass
class FakeSender:
    """Records what would be sent; offsets count per topic, partition is always 0."""

    fail_from: int | None = None
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    futures: list[FakeFuture] = field(default_factory=list)
    offsets: Counter[str] = field(default_factory=Counter)
    closed: bool = False
    flushed: int = 0

    def send(self, schema: str, record: Mapping[str, Any]) -> FakeFuture:
        topic = topic_name(schema, record)  # as PartnerProducer.send routes it
        offset = self.offsets[topic]
        self.offsets[topic] += 1
        self.sent.append((schema, dict(record)))
        error = None
        if self.fail_from is not None and len(self.sent) > self.fail_from:
            error = KafkaTimeoutError("Batch expired")
        future = FakeFuture(Metadata(topic, 0, offset), error)
        self.futures.append(future)
        return future

    def flush(self, timeout_s: float = 60.0) -> None:
        self.flushed += 1
        for future in self.futures:
            if future.error is not None:
                for fn in future.errbacks:
                    fn(future.error)
                future.errbacks.clear()

    def close(self) -> None:
        self.flush()
        self.closed = True


def _incident(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": EVENT_ID,
        "occurred_at": "2026-03-02T14:55:00Z",
        "incident_id": "POL-2026-0001",
        "source_system": "POLICE",
        "category": "TRAFFIC_ACCIDENT",
        "severity": "MODERATE",
        "status": "REPORTED",
        "ward_code": "36.72.06.1004",
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not _DROP}


_DROP = object()


def _produce(
    *,
    event_type: str | None = "incident",
    sources: list[str] | None = None,
    json_args: list[str] | None = None,
    stdin: str = "",
    sender: FakeSender | None = None,
) -> tuple[int, str, str, FakeSender, list[str]]:
    sender = sender if sender is not None else FakeSender()
    created: list[str] = []

    def factory(bootstrap: str) -> FakeSender:
        created.append(bootstrap)
        return sender

    out, err = io.StringIO(), io.StringIO()
    code = run_produce(
        "broker:9092", event_type, sources or [], json_args or [], io.StringIO(stdin),
        sender_factory=factory, out=out, err=err,
    )
    return code, out.getvalue(), err.getvalue(), sender, created


# --- timestamps -----------------------------------------------------------------------------------


def test_iso_timestamps_with_a_zone_become_utc() -> None:
    expected = datetime(2026, 3, 2, 14, 55, tzinfo=UTC)
    assert parse_timestamp("2026-03-02T14:55:00Z") == expected
    assert parse_timestamp("2026-03-02T21:55:00+07:00") == expected
    assert parse_timestamp("2026-03-02 14:55:00.000+00:00") == expected
    assert parse_timestamp("2026-03-02T21:55:00+07:00").utcoffset() == timedelta(0)


def test_epoch_milliseconds_become_utc() -> None:
    assert parse_timestamp(1772463300000) == datetime(2026, 3, 2, 14, 55, tzinfo=UTC)
    assert parse_timestamp(1772463300123) == datetime(2026, 3, 2, 14, 55, 0, 123000, tzinfo=UTC)


def test_bad_timestamps_are_refused_with_the_rule() -> None:
    with pytest.raises(ValueError, match=r"has no time zone; add Z \(UTC\) or an offset"):
        parse_timestamp("2026-03-02T21:55:00")
    with pytest.raises(ValueError, match="epoch milliseconds must be an integer"):
        parse_timestamp(1772463300000.5)
    with pytest.raises(ValueError, match="is not an ISO-8601 time"):
        parse_timestamp("yesterday")
    assert parse_timestamp(None) is None
    assert parse_timestamp(True) is True


# --- JSON input -----------------------------------------------------------------------------------


def test_json_lines_arrays_and_single_objects() -> None:
    lines = parse_json_text('{"a": 1}\n\n{"a": 2}\n', "f.jsonl")
    assert [(i.where, i.value) for i in lines] == [("f.jsonl line 1", {"a": 1}),
                                                    ("f.jsonl line 3", {"a": 2})]
    array = parse_json_text('[{"a": 1}, {"a": 2}]', "f.json")
    assert [(i.where, i.value) for i in array] == [("f.json[0]", {"a": 1}),
                                                    ("f.json[1]", {"a": 2})]
    pretty = parse_json_text('{\n  "a": 1\n}\n', "p.json")
    assert [(i.where, i.value) for i in pretty] == [("p.json", {"a": 1})]
    assert parse_json_text("  \n", "empty") == []


def test_valid_batch_is_sent_with_defaults_and_placement(tmp_path: Path) -> None:
    lamp = {
        "type": "lighting", "event_id": "0b6e3c52-8d0f-4c8e-b1a4-52f0f4a1e9d3",
        "occurred_at": 1772463300000, "lamp_id": "PJU-00001", "report_kind": "FAULT",
        "lamp_status": "NO_POWER", "power_state": "OFF",
    }
    path = tmp_path / "lamps.jsonl"
    path.write_text(json.dumps(lamp) + "\n", encoding="utf-8")
    code, out, err, sender, created = _produce(
        event_type=None, sources=[str(path)],
        json_args=[json.dumps({"type": "incident", **_incident()})],
    )
    assert (code, err, created) == (EXIT_OK, "", ["broker:9092"])
    assert out.splitlines() == [
        f"record 0: {LIGHTING} partition 0 offset 0",
        f"record 1: {INCIDENTS} partition 0 offset 0",
        f"sent 2 of 2 records: {INCIDENTS} 1, {LIGHTING} 1",
    ]
    assert sender.sent == [
        (LIGHTING_SCHEMA, {
            "event_id": "0b6e3c52-8d0f-4c8e-b1a4-52f0f4a1e9d3",
            "occurred_at": datetime(2026, 3, 2, 14, 55, tzinfo=UTC),
            "lamp_id": "PJU-00001", "report_kind": "FAULT", "lamp_status": "NO_POWER",
            "power_state": "OFF", "cabinet_id": None, "dimming_level": None,
            "energy_kwh": None, "ward_code": None, "latitude": None, "longitude": None,
        }),
        (INCIDENT_SCHEMA, {
            **_incident(), "occurred_at": datetime(2026, 3, 2, 14, 55, tzinfo=UTC),
            "latitude": None, "longitude": None, "rw": None, "rt": None, "description": "",
        }),
    ]
    assert sender.closed


def test_stdin_is_read_when_no_source_is_given() -> None:
    code, out, err, sender, _ = _produce(stdin=json.dumps([_incident(), _incident()]))
    assert (code, err) == (EXIT_OK, "")
    assert out.splitlines()[-1] == f"sent 2 of 2 records: {INCIDENTS} 2"
    assert len(sender.sent) == 2


def test_each_incident_goes_to_its_sources_topic() -> None:
    records = [_incident(), _incident(source_system="CITIZEN_APP"),
               _incident(source_system="CCTV"), _incident(source_system="POLICE")]
    code, out, err, _, _ = _produce(stdin=json.dumps(records))
    assert (code, err) == (EXIT_OK, "")
    names = (INCIDENTS, CITIZEN_INCIDENTS, SHARED_INCIDENTS)
    assert names == (f"{PREFIX}city.incidents.police.v1", f"{PREFIX}city.incidents.citizen.v1",
                     f"{PREFIX}city.incidents.v1")
    assert out.splitlines() == [
        f"record 0: {INCIDENTS} partition 0 offset 0",
        f"record 1: {CITIZEN_INCIDENTS} partition 0 offset 0",
        f"record 2: {SHARED_INCIDENTS} partition 0 offset 0",
        f"record 3: {INCIDENTS} partition 0 offset 1",
        f"sent 4 of 4 records: {CITIZEN_INCIDENTS} 1, {INCIDENTS} 2, {SHARED_INCIDENTS} 1",
    ]


def test_more_than_twenty_records_print_only_the_summary() -> None:
    code, out, _, _, _ = _produce(stdin="\n".join(json.dumps(_incident()) for _ in range(21)))
    assert code == EXIT_OK
    assert out.splitlines() == [f"sent 21 of 21 records: {INCIDENTS} 21"]


# --- violations: exit 2, nothing sent -------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (_incident(event_id=_DROP), "IncidentEvent.event_id: required field is missing"),
        (_incident(severity="HUGE"),
         "IncidentEvent.severity: 'HUGE' is not one of EXTREME, SEVERE, MODERATE, MINOR, UNKNOWN"),
        (_incident(incident_id=42), "IncidentEvent.incident_id: expected string, got int"),
        (_incident(latitude="-5.96", longitude=106.01),
         "IncidentEvent.latitude: expected double or null, got str"),
        (_incident(occurred_at="2026-03-02T21:55:00"),
         "IncidentEvent.occurred_at: '2026-03-02T21:55:00' has no time zone; add Z (UTC) or an "
         "offset such as +07:00"),
        (_incident(occurred_at=None), "IncidentEvent.occurred_at: expected timestamp-millis, "
         "got null"),
        (_incident(event_id="not-a-uuid"),
         "IncidentEvent.event_id: 'not-a-uuid' is not a UUID (RFC 4122 text, 8-4-4-4-12 hex "
         "digits)"),
        (_incident(kelurahan="Gerem"),
         "IncidentEvent: unknown field(s) 'kelurahan' (not in the schema)"),
    ],
)
def test_each_violation_names_the_field_and_sends_nothing(record: dict[str, Any],
                                                          message: str) -> None:
    code, out, err, sender, created = _produce(json_args=[json.dumps(record)])
    assert code == EXIT_INVALID
    assert out == ""
    assert err.splitlines() == [
        f"record 0 (--json #1): {message}",
        "nothing sent: 1 of 1 records are invalid",
    ]
    assert (sender.sent, created) == ([], [])


def test_one_bad_record_stops_the_whole_batch() -> None:
    batch = [_incident(), _incident(), _incident(), _incident(severity="HUGE"), _incident()]
    code, _, err, sender, created = _produce(stdin=json.dumps(batch))
    assert code == EXIT_INVALID
    assert err.splitlines() == [
        "record 3 (<stdin>[3]): IncidentEvent.severity: 'HUGE' is not one of EXTREME, SEVERE, "
        "MODERATE, MINOR, UNKNOWN",
        "nothing sent: 1 of 5 records are invalid",
    ]
    assert (sender.sent, created) == ([], [])


def test_event_type_problems() -> None:
    code, _, err, _, _ = _produce(event_type=None, json_args=[json.dumps(_incident())])
    assert (code, err.splitlines()[0]) == (
        EXIT_INVALID, "record 0 (--json #1): no event type: pass --type or give a 'type' member"
    )
    code, _, err, _, _ = _produce(json_args=[json.dumps({"type": "waste", **_incident()})])
    assert (code, err.splitlines()[0]) == (
        EXIT_INVALID, "record 0 (--json #1): type: 'waste' contradicts --type incident"
    )
    code, _, err, _, created = _produce(event_type="parking", json_args=["{}"])
    assert (code, err, created) == (
        EXIT_INVALID, "--type: 'parking' is not one of incident, lighting, waste, rt_report\n", []
    )


def test_unreadable_input_is_an_input_error(tmp_path: Path) -> None:
    code, _, err, _, created = _produce(json_args=['{"event_id": '])
    assert code == EXIT_INVALID
    assert err.startswith("--json #1: not JSON: ")
    assert err.endswith("; nothing sent\n")
    assert created == []
    code, _, err, _, _ = _produce(stdin='{"a": 1}\n{"a": NaN}\n')
    assert (code, err) == (
        EXIT_INVALID, "<stdin> line 2: not JSON: NaN is not valid JSON; nothing sent\n"
    )
    code, _, err, _, _ = _produce(json_args=["[1]"])
    assert err.splitlines()[0] == "record 0 (--json #1[0]): expected a JSON object, got int"
    missing = tmp_path / "missing.json"
    code, _, err, _, _ = _produce(sources=[str(missing)])
    assert code == EXIT_INVALID
    assert err.startswith(f"{missing}: cannot read: ")
    code, _, err, _, _ = _produce(stdin="")
    assert (code, err) == (EXIT_INVALID, "no records in the input; nothing sent\n")


@pytest.mark.parametrize(("text", "depth"), [
    ("[" * 100_000 + "]" * 100_000, 100_000),
    ('{"a":' * 5_000 + "1" + "}" * 5_000, 5_000),
    ("[" * 33 + "]" * 33, 33),
])
def test_nesting_deeper_than_the_limit_is_one_line_and_exit_2(text: str, depth: int) -> None:
    """Issue 12, hole 8: Python's parser would end in a RecursionError traceback (exit 1)."""
    for kwargs in ({"stdin": text}, {"json_args": [text]}):
        code, out, err, _, created = _produce(**kwargs)
        where = "<stdin>" if "stdin" in kwargs else "--json #1"
        assert (code, out, err, created) == (
            EXIT_INVALID, "", f"{where}: not JSON: nested {depth} levels deep (at most 32); "
            "nothing sent\n", [])


def test_nesting_up_to_the_limit_and_brackets_in_strings_are_fine() -> None:
    assert json_depth('[{"description": "[[[[{{{{ not nesting \\" ]]]]"}]') == 2
    assert json_depth("[" * 32 + "]" * 32) == 32
    code, _, err, _, _ = _produce(stdin="[" * 32 + "]" * 32)
    assert (code, err.splitlines()[0]) == (
        EXIT_INVALID, "record 0 (<stdin>[0]): expected a JSON object, got array")


def test_error_lines_escape_partner_control_characters() -> None:
    record = {"event_id": EVENT_ID, "\x1b]0;owned\x07\x1b[2J": 1}
    code, _, err, _, _ = _produce(stdin=json.dumps(record))
    assert code == EXIT_INVALID
    assert "\x1b" not in err and "\x07" not in err
    assert "\\x1b]0;owned\\x07\\x1b[2J" in err
    code, _, err, _, _ = _produce(sources=["/nowhere/\u202e\x1b[2J.json"])
    assert (code, err.startswith("/nowhere/\\u202e\\x1b[2J.json: cannot read: "),
            err.count("\n"), "\x1b" in err) == (EXIT_INVALID, True, 1, False)


# --- delivery errors: exit 1 ----------------------------------------------------------------------


def test_delivery_failure_names_the_records() -> None:
    sender = FakeSender(fail_from=1)
    code, out, err, _, _ = _produce(stdin=json.dumps([_incident(), _incident()]), sender=sender)
    assert code == EXIT_DELIVERY
    assert out.splitlines() == [
        f"record 0: {INCIDENTS} partition 0 offset 0",
        f"sent 1 of 2 records: {INCIDENTS} 1",
    ]
    assert err.splitlines() == [
        "record 1: not delivered: KafkaTimeoutError: KafkaTimeoutError: Batch expired",
        "1 records not confirmed; resending the whole batch is safe (the pipeline counts each "
        "event_id once)",
    ]


def test_unreachable_broker_is_a_delivery_error() -> None:
    def factory(bootstrap: str) -> FakeSender:
        raise KafkaTimeoutError(f"Unable to bootstrap from {bootstrap}")

    err = io.StringIO()
    code = run_produce("nowhere:9092", "incident", [], [json.dumps(_incident())],
                       io.StringIO(), sender_factory=factory, out=io.StringIO(), err=err)
    assert code == EXIT_DELIVERY
    assert err.getvalue() == (
        "cannot reach Kafka at nowhere:9092: KafkaTimeoutError: Unable to bootstrap from "
        "nowhere:9092; nothing sent\n"
    )


# --- simulate -------------------------------------------------------------------------------------


@dataclass
class FakeClock:
    t: float = 100.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def _simulate(
    *,
    count: int | None = None,
    duration_s: float | None = None,
    scenario: str | None = None,
    realtime: bool = False,
    rate: float = 50.0,
    clock: FakeClock | None = None,
    sender: FakeSender | None = None,
) -> tuple[int, str, str, FakeSender, FakeClock]:
    sender = sender if sender is not None else FakeSender()
    clock = clock if clock is not None else FakeClock()
    out, err = io.StringIO(), io.StringIO()
    code = run_simulate(
        "broker:9092", 9, rate, duration_s, count, scenario, realtime, False,
        sender_factory=lambda bootstrap: sender, out=out, err=err,
        wall_clock=lambda: NOW, monotonic=clock.monotonic, sleep=clock.sleep,
    )
    return code, out.getvalue(), err.getvalue(), sender, clock


def test_fast_mode_lays_the_feed_out_in_the_past() -> None:
    code, out, err, sender, clock = _simulate(count=300)
    assert (code, err) == (EXIT_OK, "")
    assert len(sender.sent) == 300
    times = [record["occurred_at"] for _, record in sender.sent]
    assert times == sorted(times)
    assert times[-1] < NOW
    assert NOW - times[0] < timedelta(seconds=(300 + 4 * 300**0.5) / 50.0)
    assert clock.sleeps == []
    by_type = Counter(schema.rpartition(".")[2] for schema, _ in sender.sent)
    lines = out.splitlines()
    assert lines[0] == "simulated 300 events in 0.0 s (0.0 events/s); seed 9, registry seed 7"
    assert lines[1] == "  by type: " + ", ".join(f"{k} {v}" for k, v in sorted(by_type.items()))
    assert sender.closed


def test_fast_mode_ends_the_scenario_one_second_before_now() -> None:
    code, out, _, sender, _ = _simulate(count=200, scenario="flood")
    assert code == EXIT_OK
    scenario_events = [
        r for _, r in sender.sent if str(r.get("incident_id", "")).startswith("SCN-")
    ]
    assert len(scenario_events) == 108
    assert len(sender.sent) == 308
    assert max(r["occurred_at"] for r in scenario_events) == NOW - timedelta(seconds=1)
    assert out.splitlines()[-1] == (
        "  scenario flood: 108 events; expected: 36.72.01.1001 >= CRITICAL, 36.72.01.1002 >= "
        "CRITICAL, 36.72.01.1003 >= CRITICAL, 36.72.01.1004 >= CRITICAL, 36.72.01.1005 >= "
        "CRITICAL, 36.72.01.1006 >= CRITICAL"
    )


def test_background_leaves_the_scenario_lamps_alone() -> None:
    code, _, _, sender, _ = _simulate(duration_s=1800.0, scenario="cabinet-power-loss")
    assert code == EXIT_OK
    cabinet = [r for s, r in sender.sent
               if s == LIGHTING_SCHEMA and r["cabinet_id"] == POWER_LOSS_CABINET]
    scenario_start = min(r["occurred_at"] for r in cabinet if r["lamp_status"] == "NO_POWER")
    after = [r for s, r in sender.sent if s == LIGHTING_SCHEMA
             and r["occurred_at"] >= scenario_start and r["lamp_id"] in
             {c["lamp_id"] for c in cabinet}]
    assert {(r["lamp_status"], r["cabinet_id"]) for r in after} == {
        ("NO_POWER", POWER_LOSS_CABINET)
    }
    assert len(after) == 36


def test_realtime_mode_paces_events_on_the_wall_clock() -> None:
    clock = FakeClock()
    code, _, _, sender, clock = _simulate(duration_s=3.0, realtime=True, rate=20.0, clock=clock)
    assert code == EXIT_OK
    times = [r["occurred_at"] for _, r in sender.sent]
    assert all(NOW < t < NOW + timedelta(seconds=3) for t in times)
    # The fake clock only moves by sleeping, so it ends at the last event's offset.
    assert clock.t == pytest.approx(100.0 + (times[-1] - NOW).total_seconds())
    assert len(clock.sleeps) == len(times)


def test_simulate_delivery_errors_exit_1() -> None:
    code, _, err, _, _ = _simulate(count=10, sender=FakeSender(fail_from=7))
    assert code == EXIT_DELIVERY
    assert err == (
        "3 events not delivered; first error: KafkaTimeoutError: KafkaTimeoutError: "
        "Batch expired\n"
    )


@dataclass
class OutageSender(FakeSender):
    """Refuses sends number `down_from` to `down_until` (1-based), as a producer does while
    the broker is unreachable: `send` itself raises."""

    down_from: int = 3
    down_until: int = 5
    attempts: int = 0

    def send(self, schema: str, record: Mapping[str, Any]) -> FakeFuture:
        self.attempts += 1
        if self.down_from <= self.attempts <= self.down_until:
            raise KafkaTimeoutError("Unable to bootstrap from broker:9092")
        return super().send(schema, record)


def test_a_realtime_feed_goes_on_after_sends_the_broker_refused() -> None:
    sender = OutageSender()
    code, _, err, _, _ = _simulate(duration_s=1.0, realtime=True, rate=20.0, sender=sender)
    assert code == EXIT_DELIVERY
    assert sender.attempts == len(sender.sent) + 3 > 10
    assert err == ("3 events not delivered; first error: KafkaTimeoutError: "
                   "KafkaTimeoutError: Unable to bootstrap from broker:9092\n")


def test_a_fast_feed_stops_at_the_first_send_the_broker_refused() -> None:
    sender = OutageSender()
    code, _, err, _, _ = _simulate(count=10, sender=sender)
    assert (code, sender.attempts, len(sender.sent)) == (EXIT_DELIVERY, 3, 2)
    assert err == ("1 event not delivered; first error: KafkaTimeoutError: "
                   "KafkaTimeoutError: Unable to bootstrap from broker:9092\n")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "as fast as possible needs --count or --duration (or use --realtime)\n"),
        ({"count": 5, "rate": 0.0}, "--rate must be a number > 0, got 0.0\n"),
        ({"count": 5, "scenario": "storm"},
         "--scenario 'storm' is not one of flood, cabinet-power-loss, holiday-waste-surge, "
         "night-accidents\n"),
        ({"count": 5_000_000, "rate": 1.0},
         "the feed would start 58.0 days before now; the pipeline rejects events older than 7 "
         "days: lower --count or --duration, or raise --rate\n"),
    ],
)
def test_simulate_argument_errors_exit_2(kwargs: dict[str, Any], message: str) -> None:
    code, out, err, sender, _ = _simulate(**kwargs)
    assert (code, out, err, sender.sent) == (EXIT_INVALID, "", message, [])


def test_plan_feed() -> None:
    realtime = plan_feed(NOW, 10.0, 60.0, None, True, timedelta(minutes=5), 10.0)
    assert (realtime.sim_start, realtime.end, realtime.scenario_start) == (
        NOW, NOW + timedelta(seconds=60), NOW + timedelta(seconds=10)
    )
    fast = plan_feed(NOW, 10.0, 600.0, None, False, timedelta(minutes=5), 10.0)
    assert (fast.sim_start, fast.end, fast.scenario_start) == (
        NOW - timedelta(seconds=600), NOW, NOW - timedelta(minutes=5, seconds=1)
    )
    counted = plan_feed(NOW, 10.0, None, 100, False, None, 10.0)
    assert (counted.sim_start, counted.end, counted.scenario_start) == (
        NOW - timedelta(seconds=14), NOW, None
    )


def _event(schema: str, at_s: int, asset: str) -> SimEvent:
    key = "lamp_id" if schema == LIGHTING_SCHEMA else "container_id"
    at = NOW + timedelta(seconds=at_s)
    return SimEvent(schema, {key: asset, "occurred_at": at}, at)


def test_merge_feed_orders_limits_and_drops_taken_assets() -> None:
    background = iter([_event(LIGHTING_SCHEMA, s, f"PJU-{s}") for s in range(0, 100, 10)]
                      + [_event(WASTE_SCHEMA, 100, "WC-1")])
    scenario = [_event(LIGHTING_SCHEMA, 15, "PJU-20"), _event(LIGHTING_SCHEMA, 95, "PJU-90")]
    merged = list(merge_feed(background, scenario, count=None, end=NOW + timedelta(seconds=100),
                             taken_assets=frozenset({"PJU-20", "PJU-90"}),
                             taken_from=NOW + timedelta(seconds=15)))
    assert [(e.record["lamp_id"], (e.at - NOW).seconds, flag) for e, flag in merged] == [
        ("PJU-0", 0, False), ("PJU-10", 10, False), ("PJU-20", 15, True),
        ("PJU-30", 30, False), ("PJU-40", 40, False), ("PJU-50", 50, False),
        ("PJU-60", 60, False), ("PJU-70", 70, False), ("PJU-80", 80, False),
        ("PJU-90", 95, True),
    ]
    limited = list(merge_feed(iter([_event(WASTE_SCHEMA, s, "WC-1") for s in range(10)]), [],
                              count=3, end=None))
    assert [(e.at - NOW).seconds for e, _ in limited] == [0, 1, 2]
