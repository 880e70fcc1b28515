"""The one exception type that carries "this record cannot be used" through the pipeline.

Every stage raises :class:`Rejection` (the codec its subclass ``CodecError``) with a bounded
``reason`` so the dead-letter writer can fill ``org.cityops.DeadLetter`` (stage, reason,
error_message, error_class) and metrics can use ``reason`` as a label without the label set
growing with attacker-controlled text.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

RejectionStage = Literal["DECODE", "VALIDATE", "ENRICH", "PROCESS"]
"""Pipeline stage; the symbols of ``org.cityops.RejectionStage`` except its UNKNOWN default."""

STAGES: Final[tuple[RejectionStage, ...]] = get_args(RejectionStage)

CodecReason = Literal[
    "not_single_object",
    "truncated",
    "unknown_fingerprint",
    "unexpected_schema",
    "undecodable",
    "trailing_bytes",
    "non_canonical",
    "oversized",
    "schema_violation",
]
"""Why bytes never became a record (stage DECODE): the reasons of ``schemas.codec.CodecError``."""

CODEC_REASONS: Final[tuple[CodecReason, ...]] = get_args(CodecReason)

REASONS: Final[tuple[str, ...]] = (
    # DECODE: the bytes never became a record (the codec's reasons, then the Kafka client's:
    # a record batch it could not parse, streams/runtime/poison.py).
    *CODEC_REASONS,
    "unparseable_record",
    # VALIDATE: a record, but a value breaks a rule.
    "not_finite",
    "out_of_range",
    "future_timestamp",
    "too_old",
    "unpaired_coordinates",
    "blank_id",
    "degenerate_uuid",
    "forbidden_characters",
    # A record on a partner's own topic whose payload names another source (impersonation).
    "source_mismatch",
    # VALIDATE, RT reports (docs/smart-village.md): personal data in a report, a period in the
    # future, counts that contradict each other.
    "personal_data",
    "future_period",
    "inconsistent_counts",
    "too_many_reports",
    "stale_review",
    # VALIDATE, operator actions (issue 14): a role that may not take the action, an action
    # without the target it needs (an incident, an agency).
    "action_not_allowed",
    "missing_target",
    # ENRICH: valid, but it cannot be joined to the reference data.
    "unknown_ward",
    "unknown_asset",
    "missing_location",
    "unknown_rt",
    # PROCESS: anything a stateful step could not apply.
    "processing_error",
    "ward_state_full",
    "situation_failed",
    # PROCESS, operator actions (issue 24): the case changed since the operator loaded it.
    "conflict",
)
"""Every reason a dead letter may carry, in a fixed order: the one vocabulary of rejections.

A tuple (not a set) so metrics can pre-declare one label per reason in a stable order and
dashboards show zero-valued series before the first rejection happens.
"""

DATA_QUALITY_REASONS: Final[tuple[str, ...]] = ("ward_code_mismatch", "personal_data_redacted")
"""Why an event was accepted with a correction (not a rejection: nothing is dead-lettered).

``ward_code_mismatch``: a lighting or waste event named a registered asset and sent a
``ward_code`` other than the asset's registry ward; the registry ward is used (so the asset is
counted in one ward only) and the partner's code stays in the enriched record's embedded event.
``personal_data_redacted``: an incident description held a NIK-shaped number, replaced by
"[NIK withheld]" (`processors.personal_data`) in the enriched record; the incident is kept.
A tuple in a fixed order, like :data:`REASONS`, so the metric can pre-declare its series.
"""

_REASON_SET: Final[frozenset[str]] = frozenset(REASONS)
_STAGE_SET: Final[frozenset[str]] = frozenset(STAGES)


class Rejection(Exception):  # noqa: N818 -- the domain word; "RejectionError" reads worse in DLQ rows
    """A record that breaks a rule; carries what the dead-letter envelope needs.

    ``stage`` and ``reason`` are checked against :data:`STAGES` and :data:`REASONS` at
    construction so a typo fails in tests instead of creating a new metric series in production.
    """

    __slots__ = ("message", "reason", "stage")

    def __init__(self, stage: RejectionStage, reason: str, message: str) -> None:
        if stage not in _STAGE_SET:
            raise ValueError(f"Rejection.stage={stage!r} is not one of {STAGES}")
        if reason not in _REASON_SET:
            raise ValueError(f"Rejection.reason={reason!r} is not one of {REASONS}")
        super().__init__(message)
        self.stage: RejectionStage = stage
        self.reason: str = reason
        self.message: str = message

    def __reduce__(self) -> tuple[type[Rejection], tuple[RejectionStage, str, str]]:
        # Exceptions pickle with ``self.args`` by default, which holds only the message; this
        # keeps stage and reason when a rejection crosses a process boundary.
        return (type(self), (self.stage, self.reason, self.message))

    def __repr__(self) -> str:
        return f"Rejection(stage={self.stage!r}, reason={self.reason!r}, message={self.message!r})"


def rejection_of(error: BaseException) -> tuple[RejectionStage, str]:
    """Stage and reason of a failed stateful step: a `Rejection`'s own (e.g. PROCESS,
    `ward_state_full`), anything else PROCESS, `processing_error`."""
    if isinstance(error, Rejection):
        return error.stage, error.reason
    return "PROCESS", "processing_error"
