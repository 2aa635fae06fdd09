"""channels.email_render: one rendering per notice, byte splices per recipient, parsed back by ``email``."""

from __future__ import annotations

import email.policy
import re
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime

import pytest

from channels.base import Notice, PermanentError, Recipient
from channels.email import EmailSettings
from channels.email_render import (
    PreparedEmail,
    build_message,
    format_mailbox,
    message_id_for,
    prepare_email,
)

DATE = "Tue, 03 Mar 2026 09:00:00 +0000"
UNSUB = "https://herald.example.com/u/tok-123?x=1&y=2"


def notice(**overrides: object) -> Notice:
    values: dict[str, object] = {
        "notification_id": "n-42",
        "severity": "maintenance",
        "title": "Patch Tuesday",
        "body": "Servers reboot at 22:00 CET.\nSave your work.\n\nQuestions? Ask #it-help.",
        "mandatory": False,
    }
    values.update(overrides)
    return Notice(**values)  # type: ignore[arg-type]


def recipient(**overrides: str) -> Recipient:
    values = {
        "address": "alice@example.com",
        "name": "Alice Doe",
        "person_id": "p1",
        "unsubscribe_url": UNSUB,
        "message_key": "n-42.p1.email",
    }
    values.update(overrides)
    return Recipient(**values)


def prepare(n: Notice | None = None, **kwargs: str) -> PreparedEmail:
    return prepare_email(
        n or notice(),
        from_address=kwargs.get("from_address", "Herald <herald@example.com>"),
        date=DATE,
        reply_to=kwargs.get("reply_to"),
    )


def parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    assert not message.defects, message.defects
    return message


def bodies(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n")


def assert_wire_format(raw: bytes, limit: int = 78) -> None:
    assert raw.isascii()
    assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF"
    assert b"\r" not in raw.replace(b"\r\n", b""), "bare CR"
    longest = max(len(line) for line in raw.split(b"\r\n"))
    assert longest <= limit, longest


def test_subject_is_severity_in_capitals_and_brackets() -> None:
    message = parse(build_message(prepare(), recipient()))
    assert message["Subject"] == "[MAINTENANCE] Patch Tuesday"


def test_headers_of_a_non_mandatory_notice() -> None:
    raw = build_message(prepare(reply_to="IT Help <it-help@example.com>"), recipient())
    assert_wire_format(raw)
    message = parse(raw)
    assert message["From"] == "Herald <herald@example.com>"
    assert message["To"] == "Alice Doe <alice@example.com>"
    assert message["Reply-To"] == "IT Help <it-help@example.com>"
    assert message["Date"] == DATE and parsedate_to_datetime(DATE).tzinfo is not None
    assert message["Message-ID"] == "<n-42.p1.email@example.com>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["MIME-Version"] == "1.0"
    assert message["List-Unsubscribe"] == f"<{UNSUB}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]


def test_a_mandatory_notice_has_no_unsubscribe_header_or_hint() -> None:
    prepared = prepare(notice(severity="critical", title="Core switch down", mandatory=True))
    message = parse(build_message(prepared, recipient()))
    assert message["Subject"] == "[CRITICAL] Core switch down"
    assert "List-Unsubscribe" not in message and "List-Unsubscribe-Post" not in message
    assert "Reply-To" not in message
    text, html = bodies(message)
    for body in (text, html):
        assert "unsubscribe" not in body.lower() and UNSUB not in body and "tok-123" not in body


def test_the_recipients_link_is_in_both_parts() -> None:
    prepared = prepare()
    alice = parse(build_message(prepared, recipient()))
    bob = parse(build_message(prepared, recipient(address="bob@example.com", unsubscribe_url=UNSUB + "-bob")))
    text, html = bodies(alice)
    assert f"unsubscribe: {UNSUB}\n" in text
    assert f'<a href="{UNSUB.replace("&", "&amp;")}"' in html
    bob_text, bob_html = bodies(bob)
    assert f"{UNSUB}-bob" in bob_text and f"{UNSUB.replace('&', '&amp;')}-bob" in bob_html
    assert bob_text.replace("-bob", "") == text  # only the link differs


def test_the_body_reads_back_as_written() -> None:
    text, html = bodies(parse(build_message(prepare(), recipient())))
    assert "Servers reboot at 22:00 CET.\nSave your work.\n\nQuestions? Ask #it-help." in text
    assert "Servers reboot at 22:00 CET.<br>\nSave your work.</p>" in html
    assert html.count("<p style=") == 4  # the severity, two paragraphs and the footer


def test_a_long_unsubscribe_url_is_soft_wrapped_and_reads_back_whole() -> None:
    long_url = "https://herald.example.com/u/" + "x" * 180 + "?token=" + "y" * 80
    raw = build_message(prepare(), recipient(unsubscribe_url=long_url))
    assert_wire_format(raw, limit=998)
    body_lines = raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert max(len(line) for line in body_lines) <= 76
    text, html = bodies(parse(raw))
    assert long_url in text and long_url in html


def test_a_non_mandatory_recipient_without_a_link_gets_no_header_and_no_hint() -> None:
    message = parse(build_message(prepare(), recipient(unsubscribe_url="")))
    assert "List-Unsubscribe" not in message
    text, html = bodies(message)
    assert "unsubscribe" not in text.lower() and "unsubscribe" not in html.lower()


def test_html_escapes_the_body_and_text_keeps_it() -> None:
    n = notice(title="<b>bold</b> & co", body='<script>alert("x")</script> & <img src=x onerror=y>')
    text, html = bodies(parse(build_message(prepare(n), recipient())))
    assert "<script>" not in html and "<img" not in html and "<b>bold" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;img src=x onerror=y&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in html
    assert '<script>alert("x")</script> & <img src=x onerror=y>' in text


def test_only_web_and_mail_links_become_html_links() -> None:
    n = notice(links={"Status page": "https://status.example.com/?a=1&b=2", "Evil": "javascript:alert(1)"})
    text, html = bodies(parse(build_message(prepare(n), recipient())))
    assert '<a href="https://status.example.com/?a=1&amp;b=2">Status page</a>' in html
    assert 'href="javascript' not in html and "Evil: javascript:alert(1)" in html
    assert "- Status page: https://status.example.com/?a=1&b=2" in text


def test_non_ascii_title_and_name_are_rfc2047_encoded() -> None:
    n = notice(title="Wartung für Jörg\u2019s Server — heute", body="Grüße")
    raw = build_message(
        prepare(n, from_address="Herald Benachrichtigung ✉ <herald@example.com>"),
        recipient(name="Jörg Müller-Lüdenscheidt"),
    )
    assert_wire_format(raw)
    assert b"=?utf-8?" in raw
    message = parse(raw)
    assert message["Subject"] == "[MAINTENANCE] Wartung für Jörg\u2019s Server — heute"
    assert message["To"].addresses[0].display_name == "Jörg Müller-Lüdenscheidt"
    assert message["From"].addresses[0].display_name == "Herald Benachrichtigung ✉"
    text, html = bodies(message)
    assert "Grüße" in text and "Grüße" in html


@pytest.mark.parametrize(
    "name",
    [
        "Doe, John",
        'John "Johnny" Doe',
        "J. R. \\ Backslash",
        "=?utf-8?q?not_a_word?=",
        "名前 " * 30,
        "x" * 300,
    ],
)
def test_display_names_parse_back(name: str) -> None:
    raw = build_message(prepare(), recipient(name=name))
    assert_wire_format(raw, limit=998)
    addresses = parse(raw)["To"].addresses
    assert len(addresses) == 1 and addresses[0].addr_spec == "alice@example.com"
    expected = " ".join(name.split())
    # Python 3.11 keeps the fold between encoded words of a phrase (RFC 2047 drops it)
    shown = " ".join(addresses[0].display_name.split())
    assert shown == expected or (shown.endswith("...") and expected.startswith(shown[:-3]))


INJECTIONS = [
    "Patch\r\nBcc: evil@example.com",
    "Patch\nBcc: evil@example.com",
    "Patch\rBcc: evil@example.com",
    "Patch\u2028Bcc: evil@example.com",
    "Patch\x85Bcc: evil@example.com",
    "Patch\r\n\r\n<html>body takeover</html>",
]


@pytest.mark.parametrize("attack", INJECTIONS)
def test_header_injection_through_title_name_link_and_sender(attack: str) -> None:
    n = notice(title=attack, severity="info\r\nX-Evil: 1")
    prepared = prepare_email(
        n, from_address=f'"{attack}" <herald@example.com>', reply_to=f'"{attack}" <h@example.com>'
    )
    raw = build_message(
        prepared, recipient(name=attack, unsubscribe_url=f"https://h.example.com/u/1{attack}")
    )
    assert_wire_format(raw, limit=998)
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = [line.split(b":", 1)[0] for line in head.split(b"\r\n") if line and not line[:1].isspace()]
    assert b"Bcc" not in names and b"X-Evil" not in names
    message = parse(raw)
    assert "Bcc" not in message and "X-Evil" not in message
    assert message["To"].addresses[0].addr_spec == "alice@example.com"
    assert message["List-Unsubscribe"].startswith("<https://h.example.com/u/1Patch")
    assert "\n" not in message["Subject"] and "\r" not in message["Subject"]


@pytest.mark.parametrize(
    "address",
    [
        "alice@example.com\r\nBcc: evil@example.com",
        "alice@example.com>\r\nRCPT TO:<evil@example.com",
        "Alice <alice@example.com>",
        "alice example.com",
        "alice@",
        "@example.com",
        "älice@example.com",
        "",
    ],
)
def test_an_unusable_address_is_refused_and_suppressed(address: str) -> None:
    with pytest.raises(PermanentError) as caught:
        build_message(prepare(), recipient(address=address))
    assert caught.value.reason == "invalid_address" and caught.value.suppress


def test_an_idn_domain_is_punycoded() -> None:
    message = parse(build_message(prepare(), recipient(address="joerg@bücher.example")))
    assert message["To"].addresses[0].addr_spec == "joerg@xn--bcher-kva.example"


def test_message_id_is_deterministic_per_key() -> None:
    prepared = prepare()
    first = parse(build_message(prepared, recipient()))["Message-ID"]
    again = parse(build_message(prepare(), recipient(name="Someone Else")))["Message-ID"]
    other = parse(build_message(prepared, recipient(message_key="n-42.p2.email")))["Message-ID"]
    assert first == again == "<n-42.p1.email@example.com>"
    assert other != first


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("n1/p2 email", "<n1=2Fp2=20email@example.com>"),
        ("n1=p2", "<n1=3Dp2@example.com>"),
        ("a..b", "<a=2E=2Eb@example.com>"),
        ("<x>\r\nBcc: y", "<=3Cx=3E=0D=0ABcc=3A=20y@example.com>"),
    ],
)
def test_message_id_escapes_what_an_id_cannot_hold(key: str, expected: str) -> None:
    assert message_id_for(prepare(), recipient(message_key=key)) == expected


def test_message_id_without_a_key_is_random_and_a_long_key_is_hashed() -> None:
    prepared = prepare()
    a, b = (message_id_for(prepared, recipient(message_key="")) for _ in range(2))
    assert a != b and a.endswith("@example.com>")
    long_id = message_id_for(prepared, recipient(message_key="k" * 500))
    assert re.fullmatch(r"<[0-9a-f]{64}@example\.com>", long_id)
    assert long_id == message_id_for(prepared, recipient(message_key="k" * 500))


def test_an_unsubscribe_link_is_made_header_safe() -> None:
    message = parse(build_message(prepare(), recipient(unsubscribe_url='https://h.example.com/u/a b>c"dé')))
    assert message["List-Unsubscribe"] == "<https://h.example.com/u/a%20b%3Ec%22d%C3%A9>"


def test_a_long_title_is_shortened_and_folded() -> None:
    raw = build_message(prepare(notice(title="word " * 100)), recipient())
    assert_wire_format(raw)
    subject = parse(raw)["Subject"]
    assert subject.startswith("[MAINTENANCE] word word") and subject.endswith("...") and len(subject) < 270


def test_format_mailbox_quotes_and_folds() -> None:
    assert format_mailbox("To", "", "a@example.com") == b"To: a@example.com\r\n"
    assert format_mailbox("To", "Ann Lee", "a@example.com") == b"To: Ann Lee <a@example.com>\r\n"
    assert format_mailbox("To", "Lee, Ann", "a@example.com") == b'To: "Lee, Ann" <a@example.com>\r\n'


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("Ann  Lee", b"To: Ann Lee <a@example.com>\r\n"),  # cleaned first: runs of spaces become one
        ("x" * 200, b"To: " + b"x" * 200 + b"\r\n <a@example.com>\r\n"),  # plain, folded before the address
        ("x" * 201, b'To: "' + b"x" * 197 + b'..."\r\n <a@example.com>\r\n'),  # shortened, hence quoted
        ("a=?b", b"To: =?utf-8?b?YT0/Yg==?= <a@example.com>\r\n"),  # would read as an encoded word
        ("Ann\u202e Lee", b"To: Ann Lee <a@example.com>\r\n"),  # bidi override dropped
    ],
)
def test_format_mailbox_plain_names_as_cleaned_ones(name: str, line: bytes) -> None:
    assert format_mailbox("To", name, "a@example.com") == line


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("from_address", "not an address"),
        ("from_address", "a@b.example, c@d.example"),
        ("from_address", "herald@example.com\r\nBcc: evil@example.com"),
        ("reply_to", "x@"),
    ],
)
def test_settings_refuse_a_bad_sender(field: str, value: str) -> None:
    values = {"host": "127.0.0.1", "from_address": "herald@example.com", field: value}
    with pytest.raises(ValueError, match=f"smtp.{field}"):
        EmailSettings(**values)  # type: ignore[arg-type]


def test_settings_never_show_the_password() -> None:
    configured = EmailSettings(
        host="smtp.example.com", from_address="h@example.com", username="u", password="s3cret"
    )
    assert "s3cret" not in repr(configured) and configured.effective_port == 587


def test_rendering_is_shared_and_only_the_personal_parts_differ() -> None:
    prepared = prepare()
    raw_a = build_message(prepared, recipient())
    raw_b = build_message(prepared, recipient(address="bob@example.com", name="Bob", message_key="k2"))
    differing = set(raw_a.split(b"\r\n")) ^ set(raw_b.split(b"\r\n"))
    assert {line.split(b":")[0] for line in differing} == {b"To", b"Message-ID"}
