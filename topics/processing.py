"""The register of processing (UU 27/2022 on personal data, issue 24): what personal data each
topic holds, why, on what basis and for how long, generated from the catalog.

Why generated: the retention of a topic is its broker configuration in `topics/catalog.py`; a
register written by hand would drift from it. Each catalog topic has one `Processing` entry
here (a unit test refuses a topic without one), and `register_markdown()` joins the two into
the document a data protection officer reviews and signs: `docs/processing-register.md`,
written by `python -m topics.processing docs/processing-register.md` (the same unit test
refuses a committed document that differs from what the catalog gives now).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from topics import catalog
from topics.catalog import CATALOG, DAY_MS, TopicSpec


@dataclass(frozen=True)
class Processing:
    """What one topic does with personal data."""

    personal_data: str
    """What in it is or may be personal data ("none" when nothing is)."""
    purpose: str
    basis: str = ("public task: the city's emergency and public-service duties (UU 27/2022 "
                  "Pasal 20(2)(e))")


NONE: Final = "none"
_INCIDENT = Processing(
    "free-text description (may name or describe a person, a phone number, a house), "
    "incident coordinates and RW/RT (may point at a household)",
    "place incidents in a kelurahan and dispatch the right agency")
_ENRICHED = Processing(
    "as its input topic (the partner's record is carried whole)",
    "the ward state and situations; kept short so a replay can rebuild them")
_ASSETS = Processing(NONE, "where lamps, containers and TPS are")

#: One entry per catalog topic, by declared name.
PROCESSING: Final[dict[str, Processing]] = {
    catalog.INCIDENTS.name: _INCIDENT,
    catalog.INCIDENTS_POLICE.name: _INCIDENT,
    catalog.INCIDENTS_112.name: _INCIDENT,
    catalog.INCIDENTS_CITIZEN.name: Processing(
        _INCIDENT.personal_data + "; a citizen's own report",
        "citizens' reports of incidents, placed and dispatched like the partners'"),
    catalog.LIGHTING.name: Processing(NONE, "street-lighting faults per lamp and cabinet"),
    catalog.WASTE.name: Processing(NONE, "container fill levels and collections"),
    catalog.INCIDENTS_ENRICHED.name: _ENRICHED,
    catalog.LIGHTING_ENRICHED.name: Processing(NONE, _ENRICHED.purpose),
    catalog.WASTE_ENRICHED.name: Processing(NONE, _ENRICHED.purpose),
    catalog.WARDS.name: Processing(NONE, "the 43 kelurahan, their boundaries and population"),
    catalog.ASSETS.name: _ASSETS,
    catalog.SITUATIONS.name: Processing(
        "operator account names (who acknowledged, assigned, escalated, closed) and operator "
        "notes in case timelines; RW of open incidents",
        "the command center's current picture per kelurahan, kecamatan and city"),
    catalog.DEAD_LETTERS.name: Processing(
        "the rejected record's bytes, which may hold anything its topic holds (a report "
        "rejected for a NIK-like number keeps its bytes withheld)",
        "show partners what was refused and why, so nothing valid is lost"),
    catalog.NEIGHBOURHOODS.name: Processing(
        NONE, "the RW/RT register (SYNTHETIC until a real one)"),
    catalog.RT_REPORTS.name: Processing(
        "the RT head's reporter id, household and resident counts of one RT, free-text note",
        "monthly neighbourhood reports for the smart-village indicators"),
    catalog.RT_REPORTS_BY_KELURAHAN.name: Processing(
        "as the RT reports (screened: a report with a NIK-like number never gets here)",
        "repartition the reports so one worker judges a kelurahan"),
    catalog.RT_VALIDATIONS.name: Processing(
        "counts of one RT (residents, labour force, unemployed) with the verdict",
        "tell the kelurahan officer which reports to review"),
    catalog.NEIGHBOURHOOD_INDICATORS.name: Processing(
        "counts aggregated per RW and above; a small RW's unemployed count and rate are "
        "withheld (small cells, docs/smart-village.md)",
        "unemployment and completeness indicators per RW, kelurahan, kecamatan, city"),
    catalog.OPERATOR_ACTIONS.name: Processing(
        "operator account name and role, free-text notes",
        "the command center's audit record of who did what, when",
        "legal obligation and public task: accountability of public service (UU 25/2009)"),
    catalog.ACTION_RECEIPTS.name: Processing(
        "the refusal message may name the operator who changed a case",
        "tell the operator whether an action was applied"),
    catalog.SIGN_INS.name: Processing(
        "account name (only when the typed name is an account) and client IP address",
        "the sign-in audit trail: detect password guessing and account misuse",
        "legitimate interest (Pasal 20(2)(f)) for the security of processing the controller "
        "owes (Pasal 35)"),
    catalog.SESSIONS.name: Processing(
        "account name, role, client IP address, sign-in and last-seen times",
        "keep a person signed in on every worker; let a supervisor end a session",
        "legitimate interest (Pasal 20(2)(f)) for the security of processing the controller "
        "owes (Pasal 35)"),
    catalog.RT_REVIEWS.name: Processing(
        "the reviewer's account name, a corrected RT's counts and a screened free-text note",
        "record each reviewer's decision on an RT report that needed review (issue 23)",
        "legal obligation and public task: accountability of public service (UU 25/2009)"),
    catalog.GATEWAY_RECEIPTS.name: Processing(
        "the partner principal and its idempotency keys, the records' event ids and offsets "
        "(not the records)",
        "answer a partner's retry with the first answer instead of a second write (issue 22)"),
    catalog.NOTIFICATIONS_OUTBOX.name: Processing(
        "the notice's text (kelurahan, RW, category, the assigned agency, operator account "
        "names of an assignment) and the agency routes it goes to",
        "tell the agencies of assignments, SLA clocks and closed cases (issue 25)"),
    catalog.NOTIFICATION_DELIVERIES.name: Processing(
        "each delivery's target (a Telegram chat id, a WhatsApp number, an e-mail address or a "
        "webhook URL of an agency) and the provider's answer",
        "deliver each notice once and show what the provider said (issue 25)"),
}

#: Kafka's own topics of the workers, not in the catalog but holding copies of the data above.
INTERNAL: Final[tuple[tuple[str, str, str], ...]] = (
    ("`<app id>-ward_state-changelog` (Faust)", "each kelurahan's state: open incidents with "
     "RW, operator cases with account names and notes (the newest 20 per case)",
     "compacted: the latest state of each kelurahan, as long as the kelurahan exists"),
)


def retention(spec: TopicSpec) -> str:
    """How long the topic keeps a record, read from its broker configuration."""
    if spec.compacted:
        return "compacted: the latest record per key until a tombstone deletes it"
    millis = int(spec.config.get("retention.ms", "-1"))
    if millis < 0:
        return "forever"
    days = millis / DAY_MS
    if days >= 365 and days % 365 == 0:
        years = int(days // 365)
        return f"{years} year{'s' if years > 1 else ''}"
    if days >= 1:
        return f"{int(days)} day{'s' if days > 1 else ''}"
    return f"{millis // 3_600_000} hour{'s' if millis >= 7_200_000 else ''}"


def register_markdown() -> str:
    """The register as Markdown, one row per topic in catalog order."""
    lines = [
        "# Register of processing (UU 27/2022)",
        "",
        "Generated from `topics/catalog.py` and `topics/processing.py` by",
        "`python -m topics.processing docs/processing-register.md`; do not edit by hand (a unit",
        "test refuses a copy that differs from the catalog). Controller: Pemerintah Kota",
        "Cilegon (the command center). Processor: the cityops workers and their Kafka cluster.",
        "The legal bases are the engineers' proposal, for the data protection officer to confirm",
        "or correct before signing.",
        "",
        "| topic | personal data | purpose | basis | kept |",
        "| --- | --- | --- | --- | --- |",
    ]
    for spec in CATALOG:
        entry = PROCESSING[spec.name]
        lines.append(f"| `{spec.name}` | {entry.personal_data} | {entry.purpose} | "
                     f"{entry.basis if entry.personal_data != NONE else '-'} | "
                     f"{retention(spec)} |")
    lines += ["", "Internal topics of the workers:", "",
              "| topic | personal data | kept |", "| --- | --- | --- |"]
    lines += [f"| {name} | {data} | {kept} |" for name, data, kept in INTERNAL]
    lines += [
        "",
        "Not in this register yet: the history database (another part of the project builds it",
        "with its own retention per data kind) and the workers' logs (`var/logs`, rotated by",
        "the operator of the machine; they name accounts and client addresses of sign-ins).",
        "",
        "Reviewed and approved by the data protection officer (UU 27/2022 Pasal 53):",
        "",
        "Name: ______________________  Date: ______________  Signature: ______________________",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = register_markdown()
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
