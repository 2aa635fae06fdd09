"""The import engine on its own: batching, change detection, one transaction, deactivation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from bot.directory.records import PersonRecord
from bot.directory.store import ImportResult, import_people
from bot.store import Store
from bot.tables import Group, Person, PersonGroup


def count(store: Store, table: type) -> int:
    with store.begin() as connection:
        return int(connection.scalar(select(func.count()).select_from(table)) or 0)


def crowd(n: int, title: str = "Engineer") -> list[PersonRecord]:
    return [
        PersonRecord(
            id=f"u{i:05d}",
            name=f"Person {i}",
            email=f"p{i}@example.com",
            department=("eng", "sales", "hr")[i % 3],
            title=title,
            groups=(f"team-{i % 7}", "all") if i % 2 else (),
        )
        for i in range(n)
    ]


def test_many_people_across_batches_and_change_detection(store: Store) -> None:
    first = import_people(store, crowd(6000), now=1.0)
    assert first == ImportResult(added=6000)
    assert count(store, Person) == 6000
    assert count(store, PersonGroup) == 6000
    assert count(store, Group) == 8
    people = crowd(6000)
    people[10] = PersonRecord(id="u00010", name="Renamed", email="p10@example.com", department="eng")
    people[11] = PersonRecord(**{**_fields(people[11]), "groups": ("team-4", "new")})
    second = import_people(store, people, now=2.0, batch_size=7)
    assert second == ImportResult(changed=2, unchanged=5998)
    with store.session() as session:
        renamed = session.get(Person, "u00010")
        assert renamed is not None
        assert (renamed.name, renamed.updated_at) == ("Renamed", 2.0)
        groups = session.exec(  # type: ignore[call-overload]
            select(PersonGroup.group_name).where(PersonGroup.person_id == "u00011")
        ).scalars()
        assert sorted(groups) == ["new", "team-4"]


def _fields(person: PersonRecord) -> dict[str, object]:
    return {name: getattr(person, name) for name in PersonRecord.__slots__}


def test_failure_half_way_leaves_the_database_unchanged(store: Store) -> None:
    import_people(store, crowd(3))

    def failing() -> Iterator[PersonRecord]:
        yield from crowd(10, title="Changed")
        raise RuntimeError("source went away")

    with pytest.raises(RuntimeError, match="source went away"):
        import_people(store, failing(), batch_size=2)
    assert count(store, Person) == 3
    with store.session() as session:
        titles = set(session.exec(select(Person.title)).scalars())  # type: ignore[call-overload]
    assert titles == {"Engineer"}


def test_deactivation_only_touches_the_same_source_and_spares_kept_ids(store: Store) -> None:
    import_people(store, crowd(5))
    import_people(store, [PersonRecord(id="ldap1")], source="ldap")
    result = import_people(store, crowd(2), deactivate_missing=True, keep={"u00004"})
    assert result == ImportResult(unchanged=2, deactivated=2)
    with store.session() as session:
        active = {p.id: p.active for p in session.exec(select(Person)).scalars()}  # type: ignore[call-overload]
    assert active == {
        "u00000": True,
        "u00001": True,
        "u00002": False,
        "u00003": False,
        "u00004": True,
        "ldap1": True,
    }
    # Coming back reactivates; an empty source deactivates no one.
    assert import_people(store, crowd(3)) == ImportResult(changed=1, unchanged=2)
    assert import_people(store, [], deactivate_missing=True) == ImportResult(deactivation_skipped=True)


def test_group_spelling_follows_the_stored_group(store: Store) -> None:
    import_people(store, [PersonRecord(id="a", groups=("Net-Ops",))])
    import_people(
        store, [PersonRecord(id="b", groups=("net-ops", "NEW")), PersonRecord(id="c", groups=("new",))]
    )
    with store.begin() as connection:
        assert sorted(connection.scalars(select(Group.name))) == ["NEW", "Net-Ops"]
        pairs = connection.execute(select(PersonGroup.person_id, PersonGroup.group_name)).all()
    assert sorted(tuple(p) for p in pairs) == [("a", "Net-Ops"), ("b", "NEW"), ("b", "Net-Ops"), ("c", "NEW")]
