"""The Twilio stand-in follows the Messages API contract (driven with plain aiohttp over loopback)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import pytest

from bot.standins.twilio import TwilioStandIn

SID = "AC" + "a" * 32
TOKEN = "secret-token"
NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioStandIn]:
    async with TwilioStandIn(account_sid=SID, auth_token=TOKEN, now=lambda: NOW) as standin:
        yield standin


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession,
    twilio: TwilioStandIn,
    form: dict[str, str],
    *,
    account: str = SID,
    token: str | None = TOKEN,
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    headers = {"Authorization": aiohttp.encode_basic_auth(account, token)} if token is not None else {}
    url = f"{twilio.url}/2010-04-01/Accounts/{account}/Messages.json"
    async with http.post(url, data=form, headers=headers) as response:
        return response.status, await response.json(), response


FORM = {"To": "+4915112345678", "From": "+15005550006", "Body": "[INFO] Coffee machine fixed"}


async def test_create_answers_201_with_the_message_resource(
    twilio: TwilioStandIn, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await post(http, twilio, {**FORM, "StatusCallback": "https://h.example/s"})
    assert status == 201
    assert re.fullmatch(r"SM[0-9a-f]{32}", body["sid"])
    assert body["account_sid"] == SID
    assert (body["to"], body["from"], body["body"]) == (FORM["To"], FORM["From"], FORM["Body"])
    assert body["status"] == "queued"
    assert body["num_segments"] == "1"
    assert body["direction"] == "outbound-api"
    assert body["messaging_service_sid"] is None
    assert body["date_created"] == "Tue, 02 Jan 2024 03:04:05 +0000"
    assert parsedate_to_datetime(body["date_created"]) == NOW
    assert body["uri"] == f"/2010-04-01/Accounts/{SID}/Messages/{body['sid']}.json"
    [message] = twilio.messages
    assert (message.sid, message.to, message.from_, message.body) == (
        body["sid"],
        FORM["To"],
        FORM["From"],
        FORM["Body"],
    )
    assert message.status_callback == "https://h.example/s"
    assert message.created_at == NOW


async def test_messaging_service_leaves_from_to_twilio(
    twilio: TwilioStandIn, http: aiohttp.ClientSession
) -> None:
    form = {"To": FORM["To"], "MessagingServiceSid": "MG" + "b" * 32, "Body": "hi"}
    status, body, _ = await post(http, twilio, form)
    assert status == 201
    assert body["from"] is None
    assert body["messaging_service_sid"] == "MG" + "b" * 32
    assert body["status"] == "accepted"


async def test_num_segments_follows_gsm_arithmetic(
    twilio: TwilioStandIn, http: aiohttp.ClientSession
) -> None:
    _, gsm, _ = await post(http, twilio, {**FORM, "Body": "a" * 161})
    _, ucs, _ = await post(http, twilio, {**FORM, "Body": "ж" * 71})
    assert (gsm["num_segments"], ucs["num_segments"]) == ("2", "2")


@pytest.mark.parametrize(
    ("account", "token"),
    [(SID, "wrong"), (SID, None), ("AC" + "f" * 32, TOKEN)],
    ids=["bad", "none", "other"],
)
async def test_bad_credentials_answer_401_20003(
    twilio: TwilioStandIn, http: aiohttp.ClientSession, account: str, token: str | None
) -> None:
    status, body, response = await post(http, twilio, FORM, account=account, token=token)
    assert status == 401
    assert body == {
        "code": 20003,
        "message": body["message"],
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert twilio.messages == []


async def test_another_accounts_url_answers_404(twilio: TwilioStandIn, http: aiohttp.ClientSession) -> None:
    url = f"{twilio.url}/2010-04-01/Accounts/AC{'f' * 32}/Messages.json"
    headers = {"Authorization": aiohttp.encode_basic_auth(SID, TOKEN)}
    async with http.post(url, data=FORM, headers=headers) as response:
        assert response.status == 404
        assert (await response.json())["code"] == 20404


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({**FORM, "To": "015112345678"}, 21211),
        ({**FORM, "To": "+0123"}, 21211),
        ({**FORM, "To": "+49 151 1234"}, 21211),
        ({"From": FORM["From"], "Body": "x"}, 21604),
        ({"To": FORM["To"], "Body": "x"}, 21603),
        ({"To": FORM["To"], "From": FORM["From"]}, 21602),
        ({**FORM, "Body": ""}, 21602),
        ({**FORM, "Body": "x" * 1601}, 21617),
    ],
)
async def test_invalid_requests_answer_400_with_twilio_codes(
    twilio: TwilioStandIn, http: aiohttp.ClientSession, form: dict[str, str], code: int
) -> None:
    status, body, _ = await post(http, twilio, form)
    assert status == 400
    assert set(body) == {"code", "message", "more_info", "status"}
    assert (body["code"], body["status"]) == (code, 400)
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert twilio.messages == []


async def test_opted_out_number_answers_21610(twilio: TwilioStandIn, http: aiohttp.ClientSession) -> None:
    twilio.opted_out.add(FORM["To"])
    status, body, _ = await post(http, twilio, FORM)
    assert (status, body["code"]) == (400, 21610)


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [(21614, 400, 21614), (21408, 400, 21408), (500, 500, 20500), (503, 503, 20503), (429, 429, 20429)],
)
async def test_scripted_faults_answer_as_twilio(
    twilio: TwilioStandIn, http: aiohttp.ClientSession, fault: int, status: int, code: int
) -> None:
    twilio.faults[FORM["To"]] = fault
    answer_status, body, _ = await post(http, twilio, FORM)
    assert (answer_status, body["code"], body["status"]) == (status, code, status)
    other = await post(http, twilio, {**FORM, "To": "+4915199999999"})
    assert other[0] == 201


async def test_a_502_fault_answers_plain_text_like_a_proxy(
    twilio: TwilioStandIn, http: aiohttp.ClientSession
) -> None:
    twilio.faults[FORM["To"]] = 502
    url = f"{twilio.url}/2010-04-01/Accounts/{SID}/Messages.json"
    headers = {"Authorization": aiohttp.encode_basic_auth(SID, TOKEN)}
    async with http.post(url, data=FORM, headers=headers) as response:
        assert response.status == 502
        assert response.content_type == "text/plain"


async def test_above_max_rate_answers_429_with_retry_after(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with TwilioStandIn(account_sid=SID, auth_token=TOKEN, max_rate=2, clock=clock) as twilio:
        assert [(await post(http, twilio, FORM))[0] for _ in range(2)] == [201, 201]
        status, body, response = await post(http, twilio, FORM)
        assert (status, body["code"], body["status"]) == (429, 20429, 429)
        assert response.headers["Retry-After"] == "1"
        clock.now += 0.5  # half a second refills one of two tokens
        assert (await post(http, twilio, FORM))[0] == 201
        assert (await post(http, twilio, FORM))[0] == 429
        assert (twilio.requests, len(twilio.messages)) == (5, 3)


async def test_latency_and_in_flight_count(http: aiohttp.ClientSession) -> None:
    async with TwilioStandIn(account_sid=SID, auth_token=TOKEN, latency=0.05) as twilio:
        results = await asyncio.gather(*(post(http, twilio, FORM) for _ in range(5)))
        assert [status for status, _, _ in results] == [201] * 5
        assert twilio.max_in_flight == 5
        assert twilio.in_flight == 0


async def test_a_timeout_fault_hangs_until_close(http: aiohttp.ClientSession) -> None:
    twilio = TwilioStandIn(account_sid=SID, auth_token=TOKEN)
    await twilio.start()
    twilio.faults[FORM["To"]] = "timeout"
    request = asyncio.create_task(post(http, twilio, FORM))
    await asyncio.sleep(0.2)
    assert not request.done() and twilio.in_flight == 1
    await twilio.close()
    status, body, _ = await request  # close answers the hanging request rather than dropping it
    assert (status, body["code"]) == (503, 20503)
    assert twilio.messages == []


def test_runs_as_a_module() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.standins.twilio",
            "--port",
            "0",
            "--account-sid",
            SID,
            "--auth-token",
            TOKEN,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line

        async def one() -> int:
            async with aiohttp.ClientSession() as http:
                target = f"{url.group(0)}/2010-04-01/Accounts/{SID}/Messages.json"
                headers = {"Authorization": aiohttp.encode_basic_auth(SID, TOKEN)}
                async with http.post(target, data=FORM, headers=headers) as response:
                    return response.status

        assert asyncio.run(one()) == 201
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "stopped after 1 requests" in output
