"""The audience query parser: a pure table of valid and invalid queries with their exact messages."""

from __future__ import annotations

import pytest

from bot.directory.audience import EXPECTED, Audience, AudienceError, Term, parse_audience


@pytest.mark.parametrize(
    ("text", "terms", "canonical"),
    [
        ("everyone", [Term("everyone")], "everyone"),
        ("  Everyone  ", [Term("everyone")], "everyone"),
        ("dept:Finance", [Term("dept", ("Finance",))], "dept:Finance"),
        ("DEPT:finance,hr", [Term("dept", ("finance", "hr"))], "dept:finance,hr"),
        (
            "dept:finance,hr site:berlin -group:contractors",
            [
                Term("dept", ("finance", "hr")),
                Term("site", ("berlin",)),
                Term("group", ("contractors",), negated=True),
            ],
            "dept:finance,hr site:berlin -group:contractors",
        ),
        ('site:"New York"', [Term("site", ("New York",))], 'site:"New York"'),
        ('site:"New  York",berlin', [Term("site", ("New York", "berlin"))], 'site:"New York",berlin'),
        ("site:\u201cNew York\u201d", [Term("site", ("New York",))], 'site:"New York"'),
        ("title:Manager", [Term("title", ("Manager",))], "title:Manager"),
        ("group:oncall-network", [Term("group", ("oncall-network",))], "group:oncall-network"),
        ("person:alice@example.com", [Term("person", ("alice@example.com",))], "person:alice@example.com"),
        (
            "person:<mailto:alice@example.com|alice@example.com>,bob",
            [Term("person", ("alice@example.com", "bob"))],
            "person:alice@example.com,bob",
        ),
        ("<@U123>", [Term("slack_user", ("U123",))], "<@U123>"),
        ("<@u123|alice>", [Term("slack_user", ("U123",))], "<@U123>"),
        (
            "<@W0ABC|Alice Archer> -<@U9>",
            [Term("slack_user", ("W0ABC",)), Term("slack_user", ("U9",), True)],
            "<@W0ABC> -<@U9>",
        ),
        ("<!subteam^S123>", [Term("slack_group", ("S123",))], "<!subteam^S123>"),
        ("<!subteam^S123|@netops>", [Term("slack_group", ("S123",))], "<!subteam^S123>"),
        ("everyone -dept:IT", [Term("everyone"), Term("dept", ("IT",), negated=True)], "everyone -dept:IT"),
        ("dept:R&D", [Term("dept", ("R&D",))], "dept:R&D"),
        ("-everyone", [Term("everyone", negated=True)], "-everyone"),
    ],
)
def test_parses(text: str, terms: list[Term], canonical: str) -> None:
    audience = parse_audience(text)
    assert audience == Audience(tuple(terms))
    assert str(audience) == canonical
    assert parse_audience(canonical) == audience


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", f"at 0: empty audience (expected {EXPECTED})"),
        ("   ", f"at 0: empty audience (expected {EXPECTED})"),
        ("foo:bar", f"at 0: unknown term 'foo:bar' (expected {EXPECTED})"),
        ("finance", f"at 0: unknown term 'finance' (expected {EXPECTED})"),
        ("everyone dept:x foo", f"at 16: unknown term 'foo' (expected {EXPECTED})"),
        ("everyone:", f"at 0: unknown term 'everyone:' (expected {EXPECTED})"),
        ("--dept:x", f"at 1: unknown term '-dept:x' (expected {EXPECTED})"),
        ("<#C123>", f"at 0: unknown term '<#C123>' (expected {EXPECTED})"),
        ("dept:", "at 5: expected a value after 'dept:'"),
        ("everyone dept:", "at 14: expected a value after 'dept:'"),
        ("Site: berlin", "at 5: expected a value after 'Site:'"),
        ("dept:a,", "at 7: expected a value after ','"),
        ("dept:a,,b", "at 7: expected a value after ','"),
        ("dept:,a", "at 5: expected a value after 'dept:'"),
        ('site:"New York', "at 5: unclosed quote (expected a closing '\"')"),
        ('site:""', "at 5: expected a value inside the quotes"),
        ('site:"New York"x', "at 15: expected a space or ',' after 'New York'"),
        ('site:New" York"', 'at 8: unexpected \'"\' (quote a whole value: site:"New York")'),
        ("-", "at 1: expected a term after '-'"),
        ("everyone - dept:x", "at 10: expected a term after '-'"),
        ("<@>", "at 2: expected a Slack user id (U…) after '<@'"),
        ("<@C123>", "at 2: expected a Slack user id (U…) after '<@'"),
        ("<@U123", "at 0: expected '>' to close '<@'"),
        ("<@U1>x", "at 5: expected a space after '<@U1>'"),
        ("<!subteam^>", "at 10: expected a Slack user group id (S…) after '<!subteam^'"),
        ("<!subteam^S1 everyone", "at 0: expected '>' to close '<!subteam^'"),
        ("person:<mailto:a@example.com", "at 7: expected '>' to close '<mailto:'"),
    ],
)
def test_rejects_with_position_and_expectation(text: str, message: str) -> None:
    with pytest.raises(AudienceError) as caught:
        parse_audience(text)
    assert str(caught.value) == message
    assert message.startswith(f"at {caught.value.position}: {caught.value.reason}")
