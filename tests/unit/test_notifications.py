"""The notification step's promises: what is due, to whom, in which words, and only once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.reference_data import load_ward_records
from processors.notifications import (
    Delivery,
    Notification,
    NotificationStep,
    NotifyConfigError,
    Place,
    RetryPolicy,
    idempotency_key,
    parse_config,
    places_from_wards,
    waited_ms,
)
from processors.thresholds import SlaRules

pytestmark = pytest.mark.unit

WARD = "36.72.01.1001"
T0 = datetime(2026, 12, 6, 14, 0, tzinfo=UTC)
MAP = "https://www.openstreetmap.org/?mlat=-6.03311&mlon=106.06966#map=16/-6.03311/106.06966"
CASE = "36.72.01.1001/CALL_CENTER_112/INC-7"
ACTION_ID = "7f0c6b1e-0000-4000-8000-000000000001"
CONFIG = {
    "languages": ["id", "en"], "sla_lead_seconds": 300,
    "routes": [
        {"agency": "BPBD", "kecamatan": "36.72.01", "telegram": ["-1001"],
         "email": ["pusdalops@bpbd.example"]},
        {"agency": "BPBD", "kecamatan": "*", "whatsapp": ["628111"]},
        {"agency": "COMMAND_CENTER", "kecamatan": "*", "webhook": ["http://city/hook"]},
    ],
}


def step(config: dict[str, Any] | None = None) -> NotificationStep:
    return NotificationStep(parse_config(config or CONFIG), places_from_wards(load_ward_records()),
                            SlaRules())


def case(**changes: Any) -> dict[str, Any]:
    return {"source_system": "CALL_CENTER_112", "incident_id": "INC-7", "category": "FLOOD",
            "severity": "SEVERE", "status": "REPORTED", "rw": "003", "reported_at": T0,
            "assigned_agency": None, "closed_at": None, **changes}


def situation(minutes: float, level: str = "CRITICAL", acknowledged_by: str | None = None,
              reasons: tuple[str, ...] = ("CRITICAL not acknowledged for 5 min",
                                          "3 FLOOD reports in 20 min"),
              cases: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    return {"scope": "KELURAHAN", "scope_code": WARD, "level": level,
            "acknowledged_by": acknowledged_by, "reasons": list(reasons),
            "emitted_at": T0 + timedelta(minutes=minutes), "cases": list(cases)}


def action(kind: str, minutes: float, action_id: str = ACTION_ID, **changes: Any
           ) -> dict[str, Any]:
    return {"action_id": action_id, "action": kind, "occurred_at": T0 + timedelta(minutes=minutes),
            "operator_id": "op1", "operator_role": "SUPERVISOR", "ward_code": WARD,
            "incident_source": "CALL_CENTER_112", "incident_id": "INC-7", "agency": None,
            "text": None, **changes}


def test_an_assignment_reaches_the_agency_of_the_kecamatan_in_both_languages() -> None:
    decider = step()
    assert decider.on_situation(situation(1, "ALERT", reasons=(), cases=(case(),))) == []
    (sent,) = decider.on_action(action("ASSIGN", 7, agency="BPBD", text="bawa perahu"))
    key = f"{CASE}|assigned:BPBD:{ACTION_ID}"
    assert (sent.key, sent.kind, sent.agency, sent.kecamatan_code, sent.map_url) == (
        key, "ASSIGNED", "BPBD", "36.72.01", MAP)
    assert sent.deliveries == (Delivery("telegram", "-1001"),
                               Delivery("email", "pusdalops@bpbd.example"))
    indonesian, english = sent.messages
    assert indonesian.text == "\n".join([
        "[CityOps Cilegon] Penugasan untuk BPBD: Banjir di Kel. Cibeber",
        "Apa: Banjir (SEVERE), laporan CALL_CENTER_112 INC-7",
        "Di mana: RW 003, Kel. Cibeber, Kec. Cibeber",
        f"Peta: {MAP}",
        "Sejak: 2026-12-06 21:00 WIB",
        "Yang diharapkan: BPBD mengirim petugas ke lokasi; batas tiba di lokasi "
        "2026-12-06 22:00 WIB.",
        "Ditugaskan oleh: op1 (2026-12-06 21:07 WIB)",
        "Catatan: bawa perahu",
        f"Ref: {key}"])
    assert english.text == "\n".join([
        "[CityOps Cilegon] Assigned to BPBD: Flood in Kel. Cibeber",
        "What: Flood (SEVERE), report CALL_CENTER_112 INC-7",
        "Where: RW 003, Kel. Cibeber, Kec. Cibeber",
        f"Map: {MAP}",
        "Since: 2026-12-06 21:00 WIB",
        "Expected: BPBD sends a team to the scene; on scene by 2026-12-06 22:00 WIB.",
        "Assigned by: op1 (2026-12-06 21:07 WIB)",
        "Note: bawa perahu",
        f"Ref: {key}"])
    assert english.subject == "Assigned to BPBD: Flood in Kel. Cibeber"
    assert indonesian.parameters == (
        "Banjir (SEVERE), laporan CALL_CENTER_112 INC-7",
        "RW 003, Kel. Cibeber, Kec. Cibeber", "2026-12-06 21:00 WIB",
        "BPBD mengirim petugas ke lokasi; batas tiba di lokasi 2026-12-06 22:00 WIB.", MAP)


def test_a_replayed_action_or_situation_decides_nothing_twice() -> None:
    decider = step()
    assert len(decider.on_situation(situation(6, cases=(case(),)))) == 2
    assert decider.on_situation(situation(6, cases=(case(),))) == []
    assert decider.on_situation(situation(7, cases=(case(),))) == []
    assert len(decider.on_action(action("ASSIGN", 7, agency="BPBD"))) == 1
    assert decider.on_action(action("ASSIGN", 7, agency="BPBD")) == []


def test_a_restarted_decider_restored_from_the_outbox_repeats_nothing() -> None:
    before = step()
    decided = before.on_situation(situation(6, cases=(case(),)))
    decided += before.on_action(action("ASSIGN", 7, agency="BPBD"))
    after = step()
    for notification in decided:
        after.restore(Notification.from_record(notification.to_record()))
    assert after.on_situation(situation(6, cases=(case(),))) == []
    assert after.on_situation(situation(8, cases=(case(),))) == []
    assert after.on_action(action("ASSIGN", 7, agency="BPBD")) == []


def test_a_restarted_decider_learns_cases_from_the_situations_without_deciding() -> None:
    decider = step()
    decider.observe(situation(6, cases=(case(assigned_agency="BPBD", status="DISPATCHED"),)))
    assert decider.state.decided == {}
    (closed,) = decider.on_action(action("CLOSE", 50, text="selesai"))
    assert (closed.agency, closed.messages[0].text.splitlines()[1:3]) == (
        "BPBD", ["Apa: Banjir (SEVERE), laporan CALL_CENTER_112 INC-7",
                 "Di mana: RW 003, Kel. Cibeber, Kec. Cibeber"])


def test_an_unacknowledged_critical_goes_to_the_command_center_once_per_episode() -> None:
    decider = step()
    assert decider.on_situation(situation(1, reasons=("CRITICAL not acknowledged",))) == []
    (first,) = decider.on_situation(situation(6))
    since = int((T0 + timedelta(minutes=1)).timestamp() * 1000)
    assert first.key == f"{WARD}|critical_unacknowledged:{since}"
    assert first.deliveries == (Delivery("webhook", "http://city/hook"),)
    assert first.messages[0].text == "\n".join([
        "[CityOps Cilegon] KRITIS belum di-acknowledge: Kel. Cibeber",
        "Apa: situasi CRITICAL belum di-acknowledge: CRITICAL not acknowledged for 5 min; "
        "3 FLOOD reports in 20 min",
        "Di mana: Kel. Cibeber, Kec. Cibeber",
        f"Peta: {MAP}",
        "Sejak: 2026-12-06 21:01 WIB",
        "Yang diharapkan: operator command center meng-acknowledge situasi di board dan "
        "menugaskan instansi (batas 5 menit).",
        f"Ref: {first.key}"])
    assert first.messages[1].text.splitlines()[0] == (
        "[CityOps Cilegon] CRITICAL not acknowledged: Kel. Cibeber")
    assert decider.on_situation(situation(9)) == []
    assert decider.on_situation(situation(10, acknowledged_by="op1", reasons=())) == []
    assert decider.on_situation(situation(11, "ALERT", reasons=())) == []
    assert decider.on_situation(situation(12, reasons=())) == []
    (again,) = decider.on_situation(situation(18))
    assert again.key == f"{WARD}|critical_unacknowledged:{since + 11 * 60_000}"


def test_an_sla_clock_warns_within_the_lead_time_and_names_the_agency() -> None:
    decider = step({**CONFIG, "languages": ["en"], "sla_lead_seconds": 120})
    assert decider.on_situation(situation(7, "ALERT", reasons=(), cases=(case(),))) == []
    (dispatch,) = decider.on_situation(situation(8.5, "ALERT", reasons=(), cases=(case(),)))
    assert dispatch.key == f"{CASE}|sla_expiring:dispatch"
    assert dispatch.agency == "COMMAND_CENTER"
    assert dispatch.messages[0].text == "\n".join([
        "[CityOps Cilegon] SLA dispatch about to expire: Flood in Kel. Cibeber",
        "What: Flood (SEVERE), report CALL_CENTER_112 INC-7",
        "Where: RW 003, Kel. Cibeber, Kec. Cibeber",
        f"Map: {MAP}",
        "Since: 2026-12-06 21:00 WIB",
        "Expected: assign an agency by 2026-12-06 21:10 WIB.",
        "Dispatch clock: expires in 1 min",
        f"Ref: {dispatch.key}"])
    assigned = case(assigned_agency="BPBD", status="DISPATCHED")
    assert decider.on_situation(situation(30, "ALERT", reasons=(), cases=(assigned,))) == []
    (on_scene,) = decider.on_situation(situation(61, "ALERT", reasons=(), cases=(assigned,)))
    assert (on_scene.key, on_scene.agency) == (f"{CASE}|sla_expiring:on_scene", "BPBD")
    assert on_scene.deliveries == (Delivery("telegram", "-1001"),
                                   Delivery("email", "pusdalops@bpbd.example"))
    assert on_scene.messages[0].subject == "SLA on-scene overdue: Flood in Kel. Cibeber"
    assert on_scene.messages[0].text.splitlines()[5:7] == [
        "Expected: BPBD on scene by 2026-12-06 22:00 WIB.", "On-scene clock: overdue by 1 min"]


def test_closing_tells_the_agency_it_was_assigned_to() -> None:
    decider = step({**CONFIG, "languages": ["id"]})
    decider.on_situation(situation(1, "ALERT", reasons=(), cases=(case(),)))
    decider.on_action(action("ASSIGN", 2, agency="BPBD"))
    (closed,) = decider.on_action(action("CLOSE", 50, "7f0c6b1e-0000-4000-8000-000000000002",
                                         text="air sudah surut"))
    assert (closed.kind, closed.agency) == ("CLOSED", "BPBD")
    assert closed.messages[0].text == "\n".join([
        "[CityOps Cilegon] Kasus ditutup: Banjir di Kel. Cibeber",
        "Apa: Banjir (SEVERE), laporan CALL_CENTER_112 INC-7",
        "Di mana: RW 003, Kel. Cibeber, Kec. Cibeber",
        f"Peta: {MAP}",
        "Sejak: 2026-12-06 21:00 WIB",
        "Yang diharapkan: tidak ada tindakan lanjutan; tarik petugas bila masih di lokasi.",
        "Ditutup oleh: op1 (2026-12-06 21:50 WIB)",
        "Alasan: air sudah surut",
        f"Ref: {closed.key}"])
    assert decider.on_action(action("NOTE", 51, "7f0c6b1e-0000-4000-8000-000000000003",
                                    text="x")) == []
    # the worker refuses an operator's CLOSE (supervisors close): nobody is told of it
    assert decider.on_action(action("CLOSE", 52, "7f0c6b1e-0000-4000-8000-000000000004",
                                    operator_role="OPERATOR")) == []


def test_the_most_specific_route_wins_and_an_unrouted_notice_has_no_delivery() -> None:
    config = parse_config(CONFIG)
    assert config.route("BPBD", "36.72.02").whatsapp == ("628111",)  # type: ignore[union-attr]
    assert config.route("BPBD", "36.72.01").telegram == ("-1001",)  # type: ignore[union-attr]
    assert config.route("DAMKAR", "36.72.01") is None
    (sent,) = step().on_action(action("ASSIGN", 7, agency="DAMKAR"))
    assert sent.deliveries == ()


def test_secrets_must_be_references_never_values() -> None:
    with pytest.raises(NotifyConfigError, match="never the value itself"):
        parse_config({"providers": {"telegram": {"bot_token": "123:ABC"}}})
    parsed = parse_config({"providers": {"telegram": {"bot_token": {"env": "TG_TOKEN"}}}})
    assert parsed.providers["telegram"]["bot_token"].describe() == "environment variable TG_TOKEN"
    with pytest.raises(NotifyConfigError, match=r"routes\[0\]\.agency"):
        parse_config({"routes": [{"agency": "NASA", "kecamatan": "*"}]})


def test_backoff_doubles_up_to_its_cap_and_keys_are_stable() -> None:
    policy = RetryPolicy(attempts=6, base_seconds=2, max_seconds=10)
    assert [policy.delay(n) for n in range(1, 6)] == [2, 4, 8, 10, 10]
    assert idempotency_key("a|b", "webhook", "http://x") == idempotency_key(
        "a|b", "webhook", "http://x") != idempotency_key("a|b", "webhook", "http://y")
    assert len(idempotency_key("a|b", "email", "x@y")) == 32


def test_the_wait_is_read_from_the_workers_reason() -> None:
    assert waited_ms(["3 FLOOD reports in 20 min", "CRITICAL not acknowledged for 1 h 5 min"]) \
        == 3_900_000
    assert waited_ms(["CRITICAL not acknowledged for 45 s"]) == 45_000
    assert waited_ms(["CRITICAL not acknowledged for 2 d 3 h"]) == 183_600_000
    assert waited_ms(["CRITICAL not acknowledged"]) is None


def test_places_carry_every_kelurahan_centroid() -> None:
    places = places_from_wards(load_ward_records())
    assert len(places) == 43
    assert places[WARD] == Place("Cibeber", "36.72.01", "Cibeber", -6.03311, 106.06966)


def test_the_board_link_follows_the_expected_line_when_configured() -> None:
    decider = step({**CONFIG, "languages": ["en"], "board_url": "https://board.example/"})
    (critical,) = decider.on_situation(situation(6))
    assert critical.messages[0].text.splitlines()[-2:] == [
        "Board: https://board.example/", f"Ref: {critical.key}"]
