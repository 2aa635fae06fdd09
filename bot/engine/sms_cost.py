"""What SMS can cost before sending: segments times the price per segment of each number's country.

``[twilio.prices]`` maps ISO country codes to a price per segment (``default`` for the rest; a
country missing with no default costs 0). A number's country comes from its calling code
(phonenumbers' ``region_code_for_country_code``: the code's main country, so ``+1`` prices as US).
Numbers are counted per calling-code prefix in the database, not read one by one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from sqlalchemy import ColumnElement, and_, func, select

from bot.store import Store
from bot.tables import Person, Suppression, table_of

PERSON = table_of(Person)
SUPPRESSION = table_of(Suppression)
PREFIX = 5  # "+" and up to 4 digits: enough for any calling code (1 to 3 digits)


def country_of(number: str) -> str:
    """The ISO country of an E.164 number (or its first digits); ``ZZ`` when unknown."""
    import phonenumbers  # its metadata costs ~40 ms to import: only commands that price SMS pay it

    digits = number.strip().lstrip("+")
    for size in (1, 2, 3):
        code = digits[:size]
        if code.isdigit() and int(code) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return str(phonenumbers.region_code_for_country_code(int(code)))
    return "ZZ"


def price_of(prices: Mapping[str, float], country: str) -> float:
    return float(prices.get(country, prices.get("default", 0.0)))


def numbers_by_country(store: Store, people: ColumnElement[bool]) -> Counter[str]:
    """How many of ``people`` have an SMS number (not suppressed), per country."""
    prefix = func.substr(PERSON.c.phone, 1, PREFIX)
    suppressed = (
        select(SUPPRESSION.c.address)
        .where(SUPPRESSION.c.channel == "sms", SUPPRESSION.c.address == PERSON.c.phone)
        .exists()
    )
    usable = and_(people, PERSON.c.phone.is_not(None), PERSON.c.phone != "", ~suppressed)
    with store.begin() as connection:
        rows = connection.execute(select(prefix, func.count()).where(usable).group_by(prefix)).all()
    counts: Counter[str] = Counter()
    for start, count in rows:
        counts[country_of(str(start))] += int(count)
    return counts


def most_cost(prices: Mapping[str, float], by_country: Mapping[str, int], segments: int) -> float:
    """The most sending one message of ``segments`` to every number counted can cost."""
    return sum(count * segments * price_of(prices, country) for country, count in by_country.items())
