"""Two Herald deployments in one PostgreSQL database, each in its own schema (``search_path``), keep their
advisory locks apart: each has its own scheduler leader and its whole SMTP connection budget, while two
processes of one deployment still exclude each other."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.engine.leader import Leadership
from bot.engine.shares import ConnectionShare
from bot.store import Store, open_store

pytestmark = pytest.mark.postgresql


@pytest.fixture
def two_deployments(pg_url: str, other_pg_url: str) -> Iterator[tuple[Store, Store, Store]]:
    """Two processes' stores of one deployment, and one store of another deployment."""
    first, again, other = (open_store(url) for url in (pg_url, pg_url, other_pg_url))
    try:
        yield first, again, other
    finally:
        for store in (first, again, other):
            store.dispose()


def test_each_deployment_has_its_own_leader(two_deployments: tuple[Store, Store, Store]) -> None:
    first, again, other = two_deployments
    leaders = [Leadership(store) for store in (first, again, other)]
    try:
        assert leaders[0].check() is True
        assert leaders[1].check() is False  # same schema: the first process leads
        assert leaders[2].check() is True  # another schema: its own leader
        leaders[0].release()
        assert leaders[1].check() is True
    finally:
        for leader in leaders:
            leader.release()


def test_each_deployment_has_its_whole_connection_budget(two_deployments: tuple[Store, Store, Store]) -> None:
    first, again, other = two_deployments
    shares = [ConnectionShare(store, total=3) for store in (first, again, other)]
    try:
        assert shares[0].rebalance(target=3, busy=0) == 3
        assert shares[1].rebalance(target=3, busy=0) == 0  # same schema: the budget is taken
        assert shares[2].rebalance(target=3, busy=0) == 3  # another schema: a budget of its own
        shares[0].rebalance(target=1, busy=0)
        assert shares[1].rebalance(target=3, busy=0) == 2
    finally:
        for share in shares:
            share.release()
