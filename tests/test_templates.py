"""Templates and languages through `herald announce --wait`: the real aiosmtplib client into the SMTP
server and the real twilio client into the Twilio stand-in, on SQLite and PostgreSQL; `config check`
on an operator's template directory; the person's language through `directory import` and `show`."""

from __future__ import annotations

import json
from email.message import Message
from pathlib import Path
from typing import Any

from conftest import Peers
from test_recipients_web import announce_json

PEOPLE = """id,name,email,phone,department,language
en1,Erik English,en1@example.com,+4915112345001,Ops,
de1,Dora Deutsch,de1@example.com,+4915112345002,Ops,de
pt1,Paula Souza,pt1@example.com,+4915112345003,Ops,pt_br
fr1,Fanny Francais,fr1@example.com,+4915112345004,Ops,fr-FR
"""


def setup(cli: Any, peers: Peers, db_url: str, tmp_path: Path, templates: dict[str, str]) -> str:
    directory = tmp_path / "templates"
    directory.mkdir()
    for name, text in templates.items():
        (directory / name).write_text(text, encoding="utf-8")
    config = tmp_path / "herald.toml"
    config.write_text(peers.config(db_url, f'[templates]\ndir = "{directory}"\n'), encoding="utf-8")
    people = tmp_path / "people.csv"
    people.write_text(PEOPLE, encoding="utf-8")
    imported = cli("directory", "import", str(people), "--config", str(config))
    assert imported.exit_code == 0, imported.stderr
    return str(config)


def announce(cli: Any, config: str, severity: str, title: str, channels: str = "email,sms") -> dict[str, Any]:
    return announce_json(cli, config, "dept:ops", channels, severity, title, body="Servers reboot at 22:00.")


def parts(peers: Peers) -> dict[str, tuple[Message, str, str]]:
    """Per recipient address: the message, its decoded text part and its decoded HTML part."""
    found = {}
    for received in peers.smtp.messages:
        message = received.message
        decoded = (part.get_payload(decode=True).decode("utf-8") for part in message.get_payload())
        text, html = (body.replace("\r\n", "\n") for body in decoded)
        found[received.rcpt_tos[0]] = (message, text, html)
    return found


def sms_by_number(peers: Peers) -> dict[str, str]:
    return {message.to[-3:]: message.body for message in peers.twilio.messages}


def test_each_person_gets_the_template_of_their_language(
    cli: Any, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    config = setup(
        cli,
        peers,
        db_url,
        tmp_path,
        {
            "maintenance.email.txt.pt.j2": (
                "Olá {{ name }}: {{ title }}\n{{ body }}\nPreferências: {{ unsubscribe_url }}\n"
            ),
            "maintenance.sms.pt.j2": "[MANUTENCAO] {{ title }}",
            # fails when rendered (config check would say so): the built-in one is used instead
            "maintenance.email.html.pt.j2": "<p>{{ no_such_variable }}</p>",
            # phrases: only these two blocks; every other one is the built-in English one
            "maintenance.phrases.pt.j2": (
                "{% block label %}MANUTENÇÃO{% endblock %}\n"
                "{% block sms_opt_out %}Responda STOP para sair.{% endblock %}\n"
            ),
        },
    )
    report = announce(cli, config, "maintenance", "Patch Tuesday")
    assert report["channels"]["email"]["sent"] == 4 and report["channels"]["sms"]["sent"] == 4
    mail = parts(peers)
    subjects = {address: message["Subject"] for address, (message, _, _) in mail.items()}
    assert subjects == {
        "en1@example.com": "[MAINTENANCE] Patch Tuesday",
        "de1@example.com": "[MAINTENANCE] Patch Tuesday",  # SPEC: the subject keeps [SEVERITY]
        "pt1@example.com": "[MAINTENANCE] Patch Tuesday",
        "fr1@example.com": "[MAINTENANCE] Patch Tuesday",
    }

    # de: the built-in German templates
    _, text, html = mail["de1@example.com"]
    assert text.startswith("[WARTUNG] Patch Tuesday\n")
    assert "Gesendet von Herald" in text and "Einstellungen ändern oder abbestellen: http" in text
    assert '<html lang="de">' in html and ">WARTUNG</p>" in html
    # pt-BR: the operator's pt text template (name and link spliced per recipient); the pt HTML
    # template fails, and there is no built-in pt one: the built-in English one
    message, text, html = mail["pt1@example.com"]
    link = message["List-Unsubscribe"].strip("<>")
    assert text == f"Olá Paula Souza: Patch Tuesday\nServers reboot at 22:00.\nPreferências: {link}\n"
    assert '<html lang="en">' in html and "Sent by Herald" in html
    # no language, and a language without templates (fr-FR): English
    for address in ("en1@example.com", "fr1@example.com"):
        _, text, html = mail[address]
        assert text.startswith("[MAINTENANCE] Patch Tuesday\n") and "Sent by Herald" in text
        assert '<html lang="en">' in html

    sms = sms_by_number(peers)
    german = "[WARTUNG] Patch Tuesday: Servers reboot at 22:00.\nAntworten Sie STOP zum Abbestellen."
    assert sms["002"] == german
    assert sms["003"] == "[MANUTENCAO] Patch Tuesday\nResponda STOP para sair."
    assert (
        sms["001"]
        == sms["004"]
        == ("[MAINTENANCE] Patch Tuesday: Servers reboot at 22:00.\nReply STOP to opt out.")
    )


def test_an_operator_template_overrides_the_built_in_and_escapes_html(
    cli: Any, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    config = setup(
        cli,
        peers,
        db_url,
        tmp_path,
        {
            # for every language of this kind, German included
            "outage.email.html.j2": (
                "<h1>{{ title }}</h1>\n<p>Dear {{ name }},</p>\n<p>{{ body }}</p>\n"
                "<p>Deadline {{ deadline.strftime('%H:%M') }} UTC{% if window %}, window{% endif %}.</p>\n"
                '{% include "_sig.html.j2" %}'
            ),
            "_sig.html.j2": "<p class=sig>{{ title }}</p>",  # a partial, autoescaped by its name
            "default.sms.j2": "{{ kind }}! {{ title }}",  # every kind's SMS
        },
    )
    with (tmp_path / "people.csv").open("a", encoding="utf-8") as people:
        people.write('xx1,"Ann <b>Ünal</b>",xx1@example.com,,Ops,\n')
    assert cli("directory", "import", str(tmp_path / "people.csv"), "--config", config).exit_code == 0

    report = announce(cli, config, "outage", "<script>alert(1)</script> & more")
    assert report["channels"]["email"]["sent"] == 5
    mail = parts(peers)
    _, text, html = mail["de1@example.com"]
    assert html.startswith(
        "<h1>&lt;script&gt;alert(1)&lt;/script&gt; &amp; more</h1>\n<p>Dear Dora Deutsch,</p>\n"
    )
    assert "<script>" not in html
    assert html.endswith("<p class=sig>&lt;script&gt;alert(1)&lt;/script&gt; &amp; more</p>")
    assert text.startswith("[STÖRUNG] <script>alert(1)</script> & more\n")  # text: not escaped
    _, _, html = mail["xx1@example.com"]
    assert "<p>Dear Ann &lt;b&gt;Ünal&lt;/b&gt;,</p>" in html  # the name is escaped too
    assert "<p>Deadline " in html and "window" not in html  # no maintenance window
    sms = sms_by_number(peers)
    assert set(sms.values()) == {"outage! <script>alert(1)</script> & more"}  # mandatory: no hint


def test_config_check_compiles_every_template(cli: Any, tmp_path: Path) -> None:
    directory = tmp_path / "templates"
    directory.mkdir()
    (directory / "maintenance.email.html.de.j2").write_text("<p>{{ title }}</p>\n", encoding="utf-8")
    (directory / "notes.j2").write_text("{{ title }}\n", encoding="utf-8")
    (directory / "_footer.j2").write_text("a partial\n", encoding="utf-8")
    config = tmp_path / "herald.toml"
    config.write_text(f'[templates]\ndir = "{directory}"\n', encoding="utf-8")
    ok = cli("config", "check", "--config", str(config))
    assert ok.exit_code == 0, ok.stderr
    assert ok.stderr.splitlines() == [
        f"warning: templates: {directory / 'notes.j2'}: unknown template name "
        "(expected <kind>.<channel>[.<language>].j2 with channel email.html, email.txt, sms, slack, phrases)"
    ]

    (directory / "outage.email.txt.j2").write_text("Hello\n\n{% if title %}\n{{ title }\n", encoding="utf-8")
    (directory / "info.sms.j2").write_text("{{ title }}\n{{ name }}\n", encoding="utf-8")
    broken = cli("config", "check", "--config", str(config))
    assert broken.exit_code == 2
    assert broken.stderr.splitlines() == [
        f"error: templates: {directory / 'info.sms.j2'}:2: render error: UndefinedError: 'name' is undefined",
        f"warning: templates: {directory / 'notes.j2'}: unknown template name "
        "(expected <kind>.<channel>[.<language>].j2 with channel email.html, email.txt, sms, slack, phrases)",
        f"error: templates: {directory / 'outage.email.txt.j2'}:4: syntax error: unexpected '}}'",
        f"2 template(s) in {directory} refused",
    ]
    assert "broken" not in broken.stdout and "ok:" not in broken.stdout

    missing = tmp_path / "missing.toml"
    missing.write_text(f'[templates]\ndir = "{tmp_path / "nowhere"}"\n', encoding="utf-8")
    result = cli("config", "check", "--config", str(missing))
    assert (result.exit_code, result.stderr.splitlines()[0]) == (2, "error: templates.dir: not a directory")


def test_language_is_validated_and_shown(cli: Any, db_url: str, tmp_path: Path) -> None:
    env = {"HERALD_DATABASE__URL": db_url}
    people = tmp_path / "people.csv"
    people.write_text(
        "id,name,email,language\na,Ann,a@example.com,PT_br\nb,Bo,b@example.com,english\n"
        "c,Cy,c@example.com,zh-hant-tw\n",
        encoding="utf-8",
    )
    result = cli("directory", "import", str(people), env=env)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "line 3: language: 'english' is not a BCP 47 language tag (such as de or pt-BR)"
    ]
    shown = cli("directory", "show", "everyone", "--json", env=env)
    assert [(p["id"], p["language"]) for p in json.loads(shown.stdout)["people"]] == [
        ("a", "pt-BR"),
        ("c", "zh-Hant-TW"),
    ]
    text = cli("directory", "show", "everyone", env=env).stdout
    assert "language" in text and "pt-BR" in text


def test_config_check_renders_each_phrase_alone(cli: Any, tmp_path: Path) -> None:
    directory = tmp_path / "templates"
    directory.mkdir()
    (directory / "default.phrases.de.j2").write_text(
        "{% block confirm_button %}Gelesen{% endblock %}\n{% block confirmed %}Am {{ when }}{% endblock %}\n",
        encoding="utf-8",
    )
    config = tmp_path / "herald.toml"
    config.write_text(f'[templates]\ndir = "{directory}"\n', encoding="utf-8")
    ok = cli("config", "check", "--config", str(config))
    assert (ok.exit_code, ok.stderr) == (0, ""), ok.stderr

    phrases = directory / "maintenance.phrases.j2"
    phrases.write_text(
        "{% block label %}WORKS{% endblock %}\n"
        "{% block dm_header %}\n[{{ label }}] {{ titel }}{% endblock %}\n"
        "{% block greeting %}Hi{% endblock %}\n",
        encoding="utf-8",
    )
    (directory / "info.phrases.j2").write_text("{% block label %}{{ x }{% endblock %}\n", encoding="utf-8")
    broken = cli("config", "check", "--config", str(config))
    assert broken.exit_code == 2
    lines = broken.stderr.splitlines()
    assert lines[0] == f"error: templates: {directory / 'info.phrases.j2'}:1: syntax error: unexpected '}}'"
    undefined = "render error in phrase dm_header: UndefinedError: 'titel' is undefined"
    assert lines[1] == f"error: templates: {phrases}:3: {undefined}"
    expected = "(expected confirm_button, confirm_page_done,"
    assert lines[2].startswith(f"warning: templates: {phrases}: unknown phrase 'greeting' {expected}")
    assert lines[3:] == [f"2 template(s) in {directory} refused"]
