"""Text attachments: disarmed like the body; CSV with BOM and no live formula; names disarmed."""

from __future__ import annotations

import csv
import io

import pytest

from gateway.egress.links import live_links
from gateway.model import Action
from gateway.sanitize.base import Context, PageBudget
from gateway.sanitize.names import clean_name
from gateway.sanitize.registry import sanitize_part
from gateway.sanitize.text import neutralize_cell
from gateway.settings import load_settings


def ctx() -> Context:
    limits = load_settings().sanitize
    return Context(limits=limits, pages=PageBudget(limits.max_pages_per_message))


def run(data: bytes, name: str, declared: str = "") -> tuple[str, str, tuple[str, ...], bytes]:
    report, files = sanitize_part(data, name, declared, ctx(), "2")
    assert report.action is Action.KEPT, report
    assert len(files) == 1
    return files[0].filename, files[0].content_type, report.reasons, files[0].data


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("@SUM(1+1)*cmd|' /C calc'!A0", "'@SUM(1+1)*cmd|' /C calc'!A0"),
        ('+HYPERLINK("http://evil.com","x")', '\'+HYPERLINK("http://evil.com","x")'),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("  =1+1", "'  =1+1"),
        ("\u3000=1+1", "'\u3000=1+1"),
        ("＝1+1", "'＝1+1"),
        ("+81-3-1234-5678", "'+81-3-1234-5678"),  # Excel computes it: 81-3-1234-5678
        ("-5", "-5"),
        ("+81", "+81"),
        ("-2.5", "-2.5"),
        ("1,234", "1,234"),
        ("-1.5e3", "-1.5e3"),
        ("-", "-"),
        ("髙﨑①㈱", "髙﨑①㈱"),
        ("", ""),
    ],
)
def test_neutralize_cell(cell: str, shown: str) -> None:
    assert neutralize_cell(cell) == shown


def test_csv_arrives_with_bom_no_live_formula_numbers_and_japanese_intact() -> None:
    rows = [
        ["氏名", "金額", "備考"],
        ["髙﨑①㈱", "-5", "=cmd|' /C calc'!A0"],
        ["+81", "@SUM(A1:A2)", '+HYPERLINK("https://evil.com/x","click")'],
        ["-2+3+cmd|' /C calc'!A0", "\t=1", '改行\nを含む, "引用"'],
        ["ok\x01", "https://evil.example.com/login", "evil-corp.me/login"],
    ]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    name, ctype, reasons, data = run(buf.getvalue().encode("utf-8"), "一覧.csv")
    assert (name, ctype) == ("一覧.csv", "text/csv")
    assert data.startswith(b"\xef\xbb\xbf")
    assert "links_disarmed" in reasons
    text = data.decode("utf-8-sig")
    got = list(csv.reader(io.StringIO(text, newline="")))
    assert got[0] == ["氏名", "金額", "備考"]
    assert got[1][:2] == ["髙﨑①㈱", "-5"]
    assert got[2][0] == "+81"
    assert got[3][2] == '改行\nを含む, "引用"'
    assert got[4][0] == "ok"
    for row in got:
        for cell in row:
            assert not cell or cell[0] not in "=+-@\t\r" or cell in ("-5", "+81"), cell
    assert not live_links(text)
    assert text.count("\r\n") == len(got)  # still CSV line endings


def test_csv_in_utf8_without_bom_is_read_and_written_with_bom() -> None:
    _, _, _, data = run("a,b\r\n=1+1,髙\r\n".encode(), "x.csv", "text/csv")
    assert data == "\ufeffa,b\r\n'=1+1,髙\r\n".encode()


def test_text_attachment_links_and_controls() -> None:
    sent = "資料: https:\u200b//evil.example.com/login と \\\\evil.com\\s\\x.docx\u202e"
    name, ctype, reasons, data = run(sent.encode("utf-8"), "memo.txt")
    text = data.decode("utf-8")
    assert (name, ctype) == ("memo.txt", "text/plain")
    assert "links_disarmed" in reasons
    assert not live_links(text) and "\u202e" not in text and "\u200b" not in text
    assert "hxxps://evil[.]example[.]com/login" in text


@pytest.mark.parametrize(
    ("data", "name", "declared"),
    [
        (
            b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nSUMMARY:Meeting\r\n"
            b"URL:https://evil.exa\r\n mple.com/login\r\nDESCRIPTION:join at ms-msdt:/id x\r\n"
            b"END:VEVENT\r\nEND:VCALENDAR\r\n",
            "invite.ics",
            "text/calendar",
        ),
        (
            b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Taro\r\nURL:https://evil.com/\r\nEND:VCARD\r\n",
            "card.vcf",
            "text/vcard",
        ),
    ],
)
def test_calendar_and_vcard_become_disarmed_text(data: bytes, name: str, declared: str) -> None:
    out_name, ctype, reasons, out = run(data, name, declared)
    text = out.decode("utf-8")
    assert ctype == "text/plain" and out_name.endswith(".txt")
    assert "links_disarmed" in reasons
    assert not live_links(text)
    assert "evil.exa" not in text.replace("[.]", ".") or "hxxps://" in text


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("www.evil-corp.me.docx", "www[.]evil-corp[.]me.pdf"),
        ("evil.com.pdf", "evil[.]com.pdf"),
        ("請求書\u202efdp.exe", "請求書fdp.pdf"),
        ("見積書.docm", "見積書.pdf"),
    ],
)
def test_output_names_are_disarmed(name: str, shown: str) -> None:
    out = clean_name(name, "pdf")
    assert out == shown
    assert not live_links(out)


@pytest.mark.timeout(300)
def test_twenty_megabyte_csv_finishes_without_a_live_link_or_formula() -> None:
    from gateway.egress.check import check_file

    row = "髙﨑①㈱,-5,=1+1,https://evil.example.com/x,普通のテキストです,12345\r\n"
    data = (row * (20_000_000 // len(row.encode()))).encode()
    assert len(data) >= 19_000_000
    name, ctype, reasons, out = run(data, "big.csv", "text/csv")
    assert ctype == "text/csv" and "links_disarmed" in reasons
    check_file(name, ctype, out)  # the egress checker's own reading: no link, no formula, BOM


def test_html_comments_and_entities_do_not_hide_a_link() -> None:
    from gateway.mime.html import html_to_text

    for html in (
        "<p>http<!-- x -->s://evil.example.com/login</p>",
        "<p>&#104;&#116;&#116;&#112;&#115;&#58;&#47;&#47;evil.example.com/</p>",
        "<p>www<span>.</span>evil-corp<b>.</b>me/login</p>",
        "<p>\\\\evil.example.com\\share</p>",
    ):
        text = html_to_text(html).text
        assert not live_links(text), (html, text)


@pytest.mark.parametrize("name", ["WWW.txt", "www.docx", "www3.pdf"])
def test_stem_and_extension_never_join_into_a_host(name: str) -> None:
    out = clean_name(name, "txt")
    assert not live_links(out), out
    assert out.endswith(".txt")


def test_tab_separated_csv_is_written_as_excel_reads_a_csv_file() -> None:
    """The output is always named .csv, which Excel reads with commas: a tab-separated input
    whose cells hide ",=cmd|..." must not give Excel a formula cell at a comma."""
    head = "氏名\t金額\t備考\t住所\t電話\r\n" * 5
    evil = "x,=cmd|' /C calc'!A0,y\t+HYPERLINK(1)\t\"q,@SUM(1)\"\r\n"
    name, _, _, data = run((head + evil).encode("utf-8"), "一覧.csv", "text/csv")
    assert name == "一覧.csv"
    text = data.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["氏名", "金額", "備考", "住所", "電話"]
    assert rows[5] == ["x,=cmd|' /C calc'!A0,y", "'+HYPERLINK(1)", "q,@SUM(1)"]
    for row in rows:
        for cell in row:
            assert not cell or cell[0] not in "=+-@\t\r", cell


def test_egress_reads_a_csv_file_with_commas_as_excel_does() -> None:
    from gateway.egress.check import check_file
    from gateway.errors import EgressFormula

    data = ("\ufeff" + "a\tb\tc\r\n" * 5 + "x,=cmd|' /C calc'!A0\r\n").encode()
    with pytest.raises(EgressFormula):
        check_file("x.csv", "text/csv", data)
