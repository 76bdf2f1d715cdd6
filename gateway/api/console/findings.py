"""What the console shows of issue 16's findings: the sender-authentication verdict and the
QR codes read in delivered images, taken from the stored record.

Everything here comes from a message (domains, selectors, decoded QR texts): the values are
only reshaped and bounded; escaping and the spelling-out of bidi/invisible characters happen
in the template layer for every printed value (render.py ``finalize``), and the QR texts were
disarmed (``hxxps://``, ``[.]``) before they were stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_QR = 100  # rows of the QR list on one page
MAX_DEPTH = 8  # nested parts (archives in archives) walked for QR texts
MAX_SHOWN = 300  # characters of one stored value shown

OVERALL_LABELS = {
    "pass": "認証済み",
    "suspicious": "なりすましの疑い",
    "none": "認証情報なし",
    "unknown": "確認できず（DNS 応答なし）",
}
AUTH_REASON_LABELS = {
    "dmarc_fail": "DMARC 認証に失敗",
    "display_name_lookalike": "表示名に別ドメインのアドレス",
    "envelope_mismatch": "From とエンベロープ送信者のドメインが異なる",
    "dkim_fail": "差出人ドメインの DKIM 署名が不正",
    "spf_fail": "送信元サーバが SPF で許可されていない",
    "from_unclear": "差出人アドレスが 1 つに定まらない",
}


def _text(value: Any) -> str:
    return str(value)[:MAX_SHOWN] if isinstance(value, (str, int, float)) else ""


@dataclass(frozen=True)
class Signature:
    result: str
    domain: str
    selector: str


@dataclass(frozen=True)
class AuthView:
    overall: str
    dkim: tuple[Signature, ...]
    spf: str
    dmarc: str
    dmarc_policy: str
    spf_domain: str
    source: str  # "" (none), "ours", or the trusted upstream authserv-id
    from_domain: str
    envelope_mismatch: bool
    lookalike: tuple[str, ...]
    reasons: tuple[str, ...]


def auth_view(scan: Any) -> AuthView | None:
    """The stored verdict (``scan.auth``), or None for records without one."""
    data = scan.get("auth") if isinstance(scan, dict) else None
    if not isinstance(data, dict) or not data.get("overall"):
        return None
    raw = data.get("dkim")
    sigs: list[Any] = raw if isinstance(raw, list) else []
    dkim = tuple(
        Signature(_text(s.get("result")), _text(s.get("domain")), _text(s.get("selector")))
        for s in sigs[:10]
        if isinstance(s, dict)
    )
    listed = data.get("lookalike")
    reasons = data.get("reasons")
    spf, dmarc = _text(data.get("spf")), _text(data.get("dmarc"))
    if data.get("evaluated"):
        source = "ours"
    else:
        source = _text(data.get("upstream")) if spf or dmarc else ""
    return AuthView(
        overall=_text(data.get("overall")),
        dkim=dkim,
        spf=spf,
        dmarc=dmarc,
        dmarc_policy=_text(data.get("dmarc_policy")),
        spf_domain=_text(data.get("spf_domain")),
        source=source,
        from_domain=_text(data.get("from_domain")),
        envelope_mismatch=bool(data.get("envelope_mismatch")),
        lookalike=tuple(_text(d) for d in listed[:10]) if isinstance(listed, list) else (),
        reasons=tuple(_text(r) for r in reasons[:10]) if isinstance(reasons, list) else (),
    )


@dataclass(frozen=True)
class QrRow:
    part: str
    filename: str
    text: str


def qr_rows(parts: Any) -> list[QrRow]:
    """Every decoded (already disarmed) QR text of every part, nested parts included."""
    out: list[QrRow] = []

    def walk(items: Any, depth: int) -> None:
        if not isinstance(items, list) or depth > MAX_DEPTH:
            return
        for p in items:
            if len(out) >= MAX_QR or not isinstance(p, dict):
                return
            texts = p.get("qr")
            for text in texts if isinstance(texts, list) else []:
                if len(out) >= MAX_QR:
                    return
                out.append(QrRow(_text(p.get("index")), _text(p.get("filename")), _text(text)))
            walk(p.get("children"), depth + 1)

    walk(parts, 0)
    return out
