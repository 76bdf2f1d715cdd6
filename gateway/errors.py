"""One exception tree; the class decides the outcome.

- ``Transient``  ⇒ the job is retried later (never delivered in the meantime).
- ``Permanent``  ⇒ the whole message is quarantined with ``reason``.
- ``PartRefused`` ⇒ one part is removed from the message with ``reason``;
  the rest of the message still goes through.
- ``Refused``    ⇒ a request (API, console, admin CLI) is refused and nothing changed; the
  class decides the HTTP status (one FastAPI handler maps the branch, gateway/api/main.py).
  It is a branch apart from ``MugaiError`` on purpose: a refusal is an answer to a caller,
  never the outcome of a job, so no ``except MugaiError`` in the pipeline may swallow one.

Every leaf carries a stable ``reason`` string: the API, the notice and the
metrics show it, so never rename one.
"""

from __future__ import annotations

from typing import ClassVar


class MugaiError(Exception):
    reason: ClassVar[str] = "internal_error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.reason)
        self.detail = detail


# --- retry later -----------------------------------------------------------
class Transient(MugaiError):
    reason = "transient_error"


class ScannerUnavailable(Transient):
    reason = "clamd_unavailable"


class RelayTemporary(Transient):
    reason = "relay_temporary"


class SpoolError(Transient):
    reason = "spool_error"


class ConverterBusy(Transient):
    reason = "converter_busy"


# --- quarantine the whole message --------------------------------------------
class Permanent(MugaiError):
    reason = "permanent_error"


class VirusFound(Permanent):
    reason = "virus_found"

    def __init__(self, signature: str) -> None:
        super().__init__(signature)
        self.signature = signature


class Unparseable(Permanent):
    reason = "unparseable"


class MessageTooLarge(Permanent):
    reason = "too_large"


class TooManyParts(Permanent):
    reason = "too_many_parts"


class TooDeep(Permanent):
    reason = "too_deep"


class RelayRejected(Permanent):
    reason = "relay_rejected"


class RelayTimeout(Permanent):
    reason = "relay_timeout"


class MailLoop(Permanent):
    reason = "mail_loop"


class InternalError(Permanent):
    reason = "internal_error"


# --- remove one part ---------------------------------------------------------
class PartRefused(MugaiError):
    reason = "removed"


class NotYetSupported(PartRefused):
    reason = "not_yet_supported"


class UnsupportedType(PartRefused):
    reason = "unsupported_type"


class TypeMismatch(PartRefused):
    reason = "type_mismatch"


class Encrypted(PartRefused):
    reason = "encrypted"


class PartTooLarge(PartRefused):
    reason = "too_large"


class ConversionFailed(PartRefused):
    reason = "conversion_failed"


class QrMaskIncomplete(PartRefused):  # issue 16: more codes than masking rounds remove
    reason = "qr_mask_incomplete"


class ConversionTimeout(PartRefused):
    reason = "conversion_timeout"


class InvalidOutput(PartRefused):
    """A converter returned numbers or bytes the trusted side does not accept."""

    reason = "invalid_output"


class ActiveContent(PartRefused):
    reason = "active_content"


class ArchiveLimit(PartRefused):
    reason = "archive_limit"


class PartVirusFound(PartRefused):
    reason = "virus_found"


class UnsafePath(PartRefused):
    """An archive member named with ../, an absolute path or a drive letter."""

    reason = "unsafe_path"


# --- issue 12: PPAP unlock (an operator supplies the password of a withheld part) ---
# Refusals before the password is tried (rate limit, already unlocked, one under way) are
# store refusals: see gateway/store/unlocks.py.
class UnlockError(MugaiError):
    """The unlock was refused; nothing was delivered. The API answers with the reason."""

    reason = "unlock_failed"


class WrongPassword(UnlockError):
    reason = "wrong_password"


class UnlockUnsupported(UnlockError):
    """Not an encrypted part, or an encryption no library here can open."""

    reason = "unlock_unsupported"


class PartNotFound(UnlockError):
    reason = "part_not_found"


class NothingToDeliver(UnlockError):
    """Decrypted, but the sanitizers let nothing through."""

    reason = "nothing_to_deliver"


# --- issue 13: poison mail and scan size limits ---
class CrashLoop(Permanent):
    """The process died every time this job was being handled: never given to a worker again."""

    reason = "crash_loop"


class TooLargeToScan(Permanent):
    """clamd refused the stream as over its size limit: retrying cannot help, and an unscanned
    file is never passed on."""

    reason = "too_large_to_scan"


# --- issue 11: the converter jail ---
class IsolationUnavailable(ConversionFailed):
    """The jail (bubblewrap + seccomp) cannot be built on this host: nothing is converted
    without it, the part is withheld (fail closed); /readyz and check-config say why."""

    reason = "isolation_unavailable"


# --- issue 10: the egress gate and bounded header parsing ---
class MalformedHeader(Permanent):
    """A header block the gateway refuses to hand to the stdlib parser (size, parameters)."""

    reason = "malformed_header"


class VirusFoundOutput(Permanent):
    """clamd called the rebuilt message (not the original) positive."""

    reason = "virus_found_output"


class EgressRefused(Permanent):
    """The independent last check found the rebuilt message outside the contract."""

    reason = "egress_refused"


class EgressLiveLink(EgressRefused):
    reason = "egress_live_link"


class EgressHiddenText(EgressRefused):
    reason = "egress_hidden_text"


class EgressFormula(EgressRefused):
    reason = "egress_live_formula"


class EgressType(EgressRefused):
    reason = "egress_type"


class EgressPdf(EgressRefused):
    reason = "egress_pdf"


class EgressImage(EgressRefused):
    reason = "egress_image"


# --- a request refused (API, console, admin CLI); not a job outcome ---------
# The reason is chosen where the refusal is raised ("already_released", "own_request", ...),
# so it is an instance attribute here, unlike the job outcomes above.
class Refused(Exception):
    http_status: ClassVar[int] = 400

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail

    def body(self) -> dict[str, object]:
        return {"detail": self.reason}

    def headers(self) -> dict[str, str]:
        return {}


class NotFound(Refused):
    http_status = 404


class Conflict(Refused):
    http_status = 409


class NotAllowed(Refused):
    """The actor may not do this to this object (e.g. approving their own request)."""

    http_status = 403


class Invalid(Refused):
    """The request itself is incomplete or wrong (a missing category, a wrong confirmation)."""

    http_status = 422
