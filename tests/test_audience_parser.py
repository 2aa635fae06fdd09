"""The audience query parser: a pure table of valid and invalid queries with their exact messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.directory.audience import EXPECTED, Audience, AudienceError, OrGroup, Term, parse_audience


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
        ("manager:Alice@Example.com", [Term("manager", ("Alice@Example.com",))], "manager:Alice@Example.com"),
        ("-manager:bob,carol", [Term("manager", ("bob", "carol"), True)], "-manager:bob,carol"),
        ('site:"Berlin (Mitte)"', [Term("site", ("Berlin (Mitte)",))], 'site:"Berlin (Mitte)"'),
        ('dept:"R&D(x)"', [Term("dept", ("R&D(x)",))], 'dept:"R&D(x)"'),
    ],
)
def test_parses(text: str, terms: list[Term], canonical: str) -> None:
    audience = parse_audience(text)
    assert audience == Audience(tuple(terms))
    assert str(audience) == canonical
    assert parse_audience(canonical) == audience


DEPT_X, SITE_Y, GROUP_Z = Term("dept", ("x",)), Term("site", ("y",)), Term("group", ("z",))


def either(*alternatives: tuple[Term | OrGroup, ...], negated: bool = False) -> OrGroup:
    return OrGroup(tuple(Audience(terms) for terms in alternatives), negated)


@pytest.mark.parametrize(
    ("text", "terms", "canonical"),
    [
        ("dept:x OR site:y", [either((DEPT_X,), (SITE_Y,))], "dept:x OR site:y"),
        ("dept:x or site:y", [either((DEPT_X,), (SITE_Y,))], "dept:x OR site:y"),
        (
            "(dept:x site:y) OR group:z",
            [either((DEPT_X, SITE_Y), (GROUP_Z,))],
            "dept:x site:y OR group:z",
        ),
        ("dept:x site:y OR group:z", [either((DEPT_X, SITE_Y), (GROUP_Z,))], "dept:x site:y OR group:z"),
        (
            "dept:x (site:y OR group:z)",
            [DEPT_X, either((SITE_Y,), (GROUP_Z,))],
            "dept:x (site:y OR group:z)",
        ),
        ("(dept:x)", [DEPT_X], "dept:x"),
        ("( (dept:x site:y) ) group:z", [DEPT_X, SITE_Y, GROUP_Z], "dept:x site:y group:z"),
        (
            "(dept:x OR site:y) OR group:z",
            [either((DEPT_X,), (SITE_Y,), (GROUP_Z,))],
            "dept:x OR site:y OR group:z",
        ),
        (
            "everyone -(dept:x OR site:y)",
            [Term("everyone"), either((DEPT_X,), (SITE_Y,), negated=True)],
            "everyone -(dept:x OR site:y)",
        ),
        ("-(dept:x site:y)", [either((DEPT_X, SITE_Y), negated=True)], "-(dept:x site:y)"),
        (
            "(dept:x OR site:y) (group:z OR -dept:x)",
            [either((DEPT_X,), (SITE_Y,)), either((GROUP_Z,), (Term("dept", ("x",), True),))],
            "(dept:x OR site:y) (group:z OR -dept:x)",
        ),
        (
            "(dept:finance site:berlin) OR group:execs OR manager:alice@example.com",
            [
                either(
                    (Term("dept", ("finance",)), Term("site", ("berlin",))),
                    (Term("group", ("execs",)),),
                    (Term("manager", ("alice@example.com",)),),
                )
            ],
            "dept:finance site:berlin OR group:execs OR manager:alice@example.com",
        ),
        (
            "<@U1> OR(<!subteam^S1>)",
            [either((Term("slack_user", ("U1",)),), (Term("slack_group", ("S1",)),))],
            "<@U1> OR <!subteam^S1>",
        ),
        ("dept:OR", [Term("dept", ("OR",))], "dept:OR"),
    ],
)
def test_parses_or_and_parentheses(text: str, terms: list[Term | OrGroup], canonical: str) -> None:
    """AND binds tighter than OR; a plain group is spliced into its AND, nested ORs into their OR."""
    audience = parse_audience(text)
    assert audience == Audience(tuple(terms))
    assert str(audience) == canonical
    assert parse_audience(canonical) == audience


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("(dept:x", "at 7: expected ')' to close the '(' at 0"),
        ("dept:x (site:y (group:z)", "at 24: expected ')' to close the '(' at 7"),
        ("dept:x)", "at 6: unexpected ')' (no '(' to close)"),
        (")", "at 0: unexpected ')' (no '(' to close)"),
        ("()", f"at 1: expected a term after '(' (expected {EXPECTED})"),
        ("OR dept:x", "at 0: expected a term before 'OR'"),
        ("(OR dept:x)", "at 1: expected a term before 'OR'"),
        ("dept:x OR", f"at 9: expected a term after 'OR' (expected {EXPECTED})"),
        ("dept:x OR OR site:y", f"at 10: expected a term after 'OR' (expected {EXPECTED})"),
        ("(dept:x OR )", f"at 11: expected a term after 'OR' (expected {EXPECTED})"),
        ("(dept:x)(site:y)", "at 8: expected a space after ')'"),
        ("(dept:x)site:y", "at 8: expected a space after ')'"),
        ("dept:x(site:y)", "at 6: expected a space or ',' after 'x'"),
        ("dept:(x)", "at 5: unexpected '(' (quote a value holding parentheses: site:\"Berlin (Mitte)\")"),
        ("- (dept:x)", "at 1: expected a term after '-'"),
        ("-)", "at 1: expected a term after '-'"),
        ("manager:", "at 8: expected a value after 'manager:'"),
        ("orange", f"at 0: unknown term 'orange' (expected {EXPECTED})"),
        ("(" * 21 + "dept:x" + ")" * 21, "at 20: parentheses nested too deep (at most 20)"),
    ],
)
def test_rejects_bad_grouping_with_position(text: str, message: str) -> None:
    with pytest.raises(AudienceError) as caught:
        parse_audience(text)
    assert str(caught.value) == message


def test_nesting_up_to_the_limit_and_terms_inside_groups_count() -> None:
    assert parse_audience("(" * 20 + "dept:x" + ")" * 20) == Audience((DEPT_X,))
    values = ",".join(str(i) for i in range(100))
    text = f"(dept:{values} site:x) OR -(site:{values})"  # 201 terms and values
    with pytest.raises(AudienceError) as caught:
        parse_audience(text)
    assert str(caught.value) == f"at {len(text) - 3}: too many terms (at most 200, counting each ',' value)"
    assert (
        len(parse_audience(" OR ".join(f"(dept:{i} -site:{i})" for i in range(90))).terms[0].alternatives)
        == 90
    )


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


# --- limits ----------------------------------------------------------------------------------


def test_refuses_a_query_over_2000_characters_before_parsing() -> None:
    text = "dept:" + "x" * 1996  # 2,001 characters, one term
    with pytest.raises(AudienceError) as caught:
        parse_audience(text)
    assert str(caught.value) == "at 2000: query too long: 2,001 characters (at most 2,000)"
    assert parse_audience(text[:-1]).terms[0].values == ("x" * 1995,)


@pytest.mark.parametrize(
    ("text", "position"),
    [
        (" ".join(f"site:s{i}" for i in range(201)), len(" ".join(f"site:s{i}" for i in range(200))) + 1),
        ("title:" + ",".join("x" * 200 + "y"), 6 + 2 * 200),
        ("dept:a,b " + " ".join("everyone" for _ in range(199)), 9 + 9 * 198),
    ],
    ids=["201 terms", "201 values in one term", "200 terms and one more value"],
)
def test_refuses_more_than_200_terms_counting_values(text: str, position: int) -> None:
    with pytest.raises(AudienceError) as caught:
        parse_audience(text)
    assert str(caught.value) == f"at {position}: too many terms (at most 200, counting each ',' value)"


def test_200_terms_are_accepted() -> None:
    assert len(parse_audience(" ".join(f"site:s{i}" for i in range(200))).terms) == 200
    assert len(parse_audience("title:" + ",".join("x" * 200)).terms[0].values) == 200


def test_directory_show_refuses_a_long_query_in_one_line(cli: Any, db_url: str) -> None:
    env = {"HERALD_DATABASE__URL": db_url}
    text = " ".join(f"dept:d{i}" for i in range(500))  # ~4,900 characters: SQLite's expression limit before
    result = cli("directory", "show", text, env=env)
    assert (result.exit_code, result.stdout) == (2, "")
    too_long = "query too long: 4,889 characters (at most 2,000)"
    assert result.stderr == f"herald: bad audience: at 2000: {too_long}\n"
    many = " ".join(f"dept:d{i}" for i in range(201))  # 1,899 characters
    result = cli("directory", "show", many, env=env)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.startswith("herald: bad audience: at ") and result.stderr.count("\n") == 1
    assert "too many terms (at most 200" in result.stderr


def test_directory_show_runs_a_query_at_the_limits(cli: Any, db_url: str, tmp_path: Path) -> None:
    """200 terms, each compiled to SQL, stay under SQLite's expression depth (and PostgreSQL's)."""
    env = {"HERALD_DATABASE__URL": db_url}
    people = tmp_path / "people.csv"
    people.write_text("id,name,email,title\nann,Ann,ann@example.com,Zx\n", encoding="utf-8")
    assert cli("directory", "import", str(people), env=env).exit_code == 0
    for text in (
        " ".join(["title:z"] + ["-title:q"] * 199),
        "title:" + ",".join(["z"] + [f"q{i}" for i in range(199)]),
        " ".join(["person:ann"] + [f"-group:g{i},h" for i in range(99)] + ["everyone"]),
        " OR ".join(["title:z"] + ["dept:q"] * 199),
        " OR ".join(f"(title:z -person:p{i})" for i in range(80)),
        _nested_negations(20),
    ):
        assert len(text) <= 2000
        result = cli("directory", "show", "--json", "--", text, env=env)
        assert (result.exit_code, result.stderr) == (0, ""), text
        assert json.loads(result.stdout)["count"] == 1


def _nested_negations(depth: int) -> str:
    """``-(dept:q OR -(dept:q OR ... title:z))``: ``depth`` levels, an even count selects ``title:z``."""
    text = "title:z"
    for _ in range(depth):
        text = f"-(dept:q OR {text})"
    return text


def test_directory_show_runs_or_and_manager_through_the_cli(cli: Any, db_url: str, tmp_path: Path) -> None:
    env = {"HERALD_DATABASE__URL": db_url}
    people = tmp_path / "people.csv"
    people.write_text(
        "id,name,email,department,site,manager,active\n"
        "alice,Alice,alice@example.com,IT,Berlin,,1\n"
        "bob,Bob,bob@example.com,Finance,Berlin,ALICE@example.com,1\n"
        "carol,Carol,carol@example.com,X,Y,alice,1\n"
        "dan,Dan,dan@example.com,x,Z,bob,1\n"
        "erin,Erin,erin@example.com,Sales,y,Alice,0\n",
        encoding="utf-8",
    )
    assert cli("directory", "import", str(people), env=env).exit_code == 0
    query = "(dept:x site:y) OR manager:alice@example.com"
    result = cli("directory", "show", "--json", query, env=env)
    assert (result.exit_code, result.stderr) == (0, "")
    shown = json.loads(result.stdout)
    assert (shown["count"], shown["inactive"]) == (2, 1)
    assert [person["id"] for person in shown["people"]] == ["bob", "carol"]
    result = cli("directory", "show", "(dept:x OR dept:finance) -manager:ALICE", env=env)
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.splitlines()[0] == "1 person matches (dept:x OR dept:finance) -manager:ALICE"
    assert "dan@example.com" in result.stdout
    result = cli("directory", "show", "(dept:x site:y OR manager:bob", env=env)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == "herald: bad audience: at 29: expected ')' to close the '(' at 0\n"


# --- round trip --------------------------------------------------------------------------------

_VALUES = st.text(alphabet="abcXYZ09 ()&.-_", min_size=1, max_size=6).filter(
    lambda value: value == " ".join(value.split())
)
_TERMS = st.builds(
    Term,
    st.sampled_from(["dept", "site", "group", "title", "person", "manager"]),
    st.lists(_VALUES, min_size=1, max_size=3).map(tuple),
    st.booleans(),
)


def _groups(children: st.SearchStrategy[Audience]) -> st.SearchStrategy[Audience]:
    negated = st.builds(lambda a: Audience((OrGroup((a,), True),)), children)
    either = st.builds(
        lambda alts, neg: Audience((OrGroup(tuple(alts), neg),)),
        st.lists(children, min_size=2, max_size=3),
        st.booleans(),
    )
    both = st.builds(lambda a, b: Audience(a.terms + b.terms), children, children)
    return st.one_of(negated, either, both)


_AUDIENCES = st.recursive(st.builds(lambda t: Audience((t,)), _TERMS), _groups, max_leaves=8)


def _selects(node: Audience | Term | OrGroup, person: dict[str, str]) -> bool:
    """A toy evaluator: equal values (case-insensitive) per kind; enough to compare two parses."""
    if isinstance(node, Audience):
        return all(_selects(child, person) for child in node.terms)
    if isinstance(node, OrGroup):
        hit = any(_selects(alternative, person) for alternative in node.alternatives)
    else:
        hit = person[node.kind].lower() in {value.lower() for value in node.values}
    return hit != node.negated


_PEOPLE = st.lists(
    st.fixed_dictionaries(
        {kind: _VALUES for kind in ("dept", "site", "group", "title", "person", "manager")}
    ),
    min_size=1,
    max_size=5,
)


@given(_AUDIENCES, _PEOPLE)
@settings(max_examples=300, deadline=None, database=None)
def test_the_canonical_text_selects_the_same_people(audience: Audience, people: list[dict[str, str]]) -> None:
    """Printing an audience and parsing it back keeps precedence, grouping and negation."""
    parsed = parse_audience(str(audience))
    for person in people:
        assert _selects(parsed, person) == _selects(audience, person), (str(audience), person)
    assert str(parse_audience(str(parsed))) == str(parsed)
