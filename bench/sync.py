"""Directory sync benchmark: 50,000 people from a real OpenLDAP server through ``runner.sync``.

    .venv/bin/python bench/sync.py [--n 50000] [--db sqlite|postgresql] [--url URL] [--page-size 1000]

Loads N people (AD-like attributes, every 40th disabled, each in 1-3 of 30 groups listed both in
``memberOf`` and in the group entries' ``member``) into a slapd started for the run (``slapadd``,
tests/ldap_server.py's configuration), then, each in its own process so its peak RSS is its own:

- **raw**: ldap3 alone, the same three paged searches Herald makes (people with the mapped
  attributes, disabled DNs, groups with members), entries counted and dropped: the baseline;
- **fetch**: ``bot.sync.ldap_source.fetch_entries`` (the searches + DN resolution, nested groups);
- **sync**: ``bot.sync.runner.sync`` into an empty database (fetch + validation + import + audit);
- **resync**: the same again, nothing changed (everyone unchanged).

Prints seconds and peak RSS for each, and sync / raw.
"""

# ruff: noqa: E402  (sys.path is fixed before the imports below)
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where a bench script named like a top-level
# module would shadow it; the repository root (and tests/, for the slapd helper) instead.
ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)
sys.path.insert(1, str(ROOT / "tests"))

import argparse
import asyncio
import json
import random
import resource
import shutil
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ldap_server import SERVICE_DN, SERVICE_PASSWORD, SUFFIX, LdapServer

BASE = f"ou=bench,{SUFFIX}"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
DEPARTMENTS = ("Finance", "IT", "Sales", "HR", "Legal", "Support", "Marketing", "Operations")
SITES = ("Berlin", "London", "New York", "Paris", "Austin", "Singapore")


def entries(n: int, seed: int = 7) -> Iterator[tuple[str, dict[str, Any]]]:
    rng = random.Random(seed)
    yield BASE, {"objectClass": "organizationalUnit", "ou": "bench"}
    yield PEOPLE, {"objectClass": "organizationalUnit", "ou": "people"}
    yield GROUPS, {"objectClass": "organizationalUnit", "ou": "groups"}
    members: dict[int, list[str]] = {g: [] for g in range(30)}
    for i in range(n):
        dn = f"uid=u{i:06d},{PEOPLE}"
        groups = rng.sample(range(30), rng.randrange(1, 4))
        for group in groups:
            members[group].append(dn)
        attributes: dict[str, Any] = {
            "objectClass": ["inetOrgPerson", "user"],
            "uid": f"u{i:06d}",
            "cn": f"Person {i}",
            "sn": f"P{i}",
            "displayName": f"Person {i}",
            "sAMAccountName": f"u{i:06d}",
            "objectCategory": "person",
            "userAccountControl": "514" if i % 40 == 7 else "512",
            "mail": f"person{i}@example.com",
            "department": rng.choice(DEPARTMENTS),
            "physicalDeliveryOfficeName": rng.choice(SITES),
            "title": "Engineer",
            "memberOf": [f"cn=team-{g:02d},{GROUPS}" for g in groups],
        }
        if i % 10:
            attributes["mobile"] = f"+49 30 {rng.randrange(10**7, 10**8)}"
        if i:
            attributes["manager"] = f"uid=u{rng.randrange(0, min(i, 500)):06d},{PEOPLE}"
        yield dn, attributes
    for group, dns in members.items():
        # Nested: every team is also in "everyone-teams".
        yield (
            f"cn=team-{group:02d},{GROUPS}",
            {"objectClass": ["groupOfNames", "group"], "cn": f"team-{group:02d}", "member": dns},
        )
    team_dns = [f"cn=team-{g:02d},{GROUPS}" for g in range(30)]
    yield (
        f"cn=everyone-teams,{GROUPS}",
        {"objectClass": ["groupOfNames", "group"], "cn": "everyone-teams", "member": team_dns},
    )


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ldap_settings(url: str, page_size: int) -> Any:
    from bot.config import LdapSettings

    return LdapSettings(
        url=url,
        bind_dn=SERVICE_DN,
        bind_password=SERVICE_PASSWORD,
        base_dn=PEOPLE,
        group_base_dn=GROUPS,
        page_size=page_size,
    )


# --- phases (each in its own process) ----------------------------------------------------------------


def phase_raw(url: str, page_size: int) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ldap3 import NONE, SUBTREE, Connection, Server
    from bot.sync.ldap_source import attribute_map

    settings = ldap_settings(url, page_size)
    attributes = sorted({a for names in attribute_map({}).values() for a in names})
    start_rss = maxrss_mb()
    started = time.perf_counter()
    connection = Connection(Server(url, get_info=NONE), SERVICE_DN, SERVICE_PASSWORD, auto_bind=True)
    counts = []
    for base, search_filter, wanted in (
        (PEOPLE, settings.user_filter, attributes),
        (PEOPLE, f"(&{settings.user_filter}{settings.disabled_filter})", ["1.1"]),
        (GROUPS, settings.group_filter, ["cn", "member"]),
    ):
        count = 0
        for _ in connection.extend.standard.paged_search(
            base, search_filter, SUBTREE, attributes=wanted, paged_size=page_size, generator=True
        ):
            count += 1
        counts.append(count)
    connection.unbind()
    return {
        "seconds": time.perf_counter() - started,
        "entries": counts,
        "rss_start": start_rss,
        "rss_peak": maxrss_mb(),
    }


def phase_fetch(url: str, page_size: int) -> dict[str, Any]:
    from bot.sync.ldap_source import fetch_entries

    start_rss = maxrss_mb()
    started = time.perf_counter()
    fetched = fetch_entries(ldap_settings(url, page_size))
    return {
        "seconds": time.perf_counter() - started,
        "entries": len(fetched.rows),
        "requests": fetched.requests,
        "rss_start": start_rss,
        "rss_peak": maxrss_mb(),
    }


def phase_sync(url: str, page_size: int, db_url: str) -> dict[str, Any]:
    from bot.config import load_settings
    from bot.store import open_store
    from bot.sync.runner import sync

    ldap = ldap_settings(url, page_size).model_dump()
    ldap["bind_password"] = SERVICE_PASSWORD
    settings = load_settings(None, database={"url": db_url}, directory={"source": "ldap", "ldap": ldap})
    store = open_store(db_url)
    start_rss = maxrss_mb()
    started = time.perf_counter()
    summary = asyncio.run(sync(store, settings, actor="bench"))
    seconds = time.perf_counter() - started
    store.dispose()
    return {
        "seconds": seconds,
        "summary": summary.line(),
        "rss_start": start_rss,
        "rss_peak": maxrss_mb(),
    }


# --- orchestration ------------------------------------------------------------------------------------


@contextmanager
def database(kind: str, url: str | None, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    from sqlalchemy import create_engine, text

    from bot.store import normalise_url

    base = url or PG_DEFAULT
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def run_phase(*args: str) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, __file__, "--phase", *args], capture_output=True, text=True, check=False
    )
    if output.returncode:
        raise SystemExit(f"phase {args[0]} failed:\n{output.stderr}")
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--url", help=f"PostgreSQL base URL (default {PG_DEFAULT})")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, url, *rest = args.phase
        if name == "raw":
            result = phase_raw(url, args.page_size)
        elif name == "fetch":
            result = phase_fetch(url, args.page_size)
        else:
            result = phase_sync(url, args.page_size, rest[0])
        print(json.dumps(result))
        return

    slapd = shutil.which("slapd") or "/usr/sbin/slapd"
    if not Path(slapd).exists():
        raise SystemExit("slapd is not installed (Debian: apt-get install slapd ldap-utils)")
    with tempfile.TemporaryDirectory(prefix="herald-bench-sync-") as folder:
        workdir = Path(folder)
        server = LdapServer(workdir / "slapd")
        started = time.perf_counter()
        server.configure(entries(args.n))
        print(f"slapadd {args.n:,} people + 31 groups: {time.perf_counter() - started:.1f} s")
        url = server.start()
        try:
            with database(args.db, args.url, workdir) as db_url:
                size = str(args.page_size)
                results = {
                    "raw": run_phase("raw", url, "--page-size", size),
                    "fetch": run_phase("fetch", url, "--page-size", size),
                    "sync": run_phase("sync", url, db_url, "--page-size", size),
                    "resync": run_phase("sync", url, db_url, "--page-size", size),
                }
        finally:
            server.stop()
    print(f"{args.n:,} people, page size {args.page_size}, database {args.db}")
    print(f"{'path':<50} {'seconds':>8} {'peak RSS MB':>12} {'(start)':>8}")
    labels = {
        "raw": "raw: ldap3 paged searches alone (baseline)",
        "fetch": "fetch: fetch_entries (searches + DNs, groups)",
        "sync": "sync: runner.sync into an empty database",
        "resync": "resync: runner.sync again, nothing changed",
    }
    for name, label in labels.items():
        seconds, peak, start = (results[name][key] for key in ("seconds", "rss_peak", "rss_start"))
        print(f"{label:<50} {seconds:>8.2f} {peak:>12.0f} {start:>8.0f}")
    raw = results["raw"]["seconds"]
    sync_ratio, resync_ratio = (results[name]["seconds"] / raw for name in ("sync", "resync"))
    print(f"sync / raw: {sync_ratio:.2f}x   resync / raw: {resync_ratio:.2f}x")
    print(f"sync: {results['sync']['summary']}")
    print(f"resync: {results['resync']['summary']}")


if __name__ == "__main__":
    main()
