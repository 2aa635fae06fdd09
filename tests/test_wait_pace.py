"""`announce --wait` reads the progress every half second, and sooner as the last deliveries are due
(bot.cli.wait.Pace): a table of reads (deliveries left, when) and the pause each one chooses."""

from __future__ import annotations

import pytest

from bot.cli.wait import POLL, POLL_MIN, SETTLE, Pace


@pytest.mark.parametrize(
    ("reads", "pauses"),
    [
        # nothing sent yet: the usual half second
        ([(100, 0.0), (100, 0.5)], [POLL, POLL]),
        # 100/s with 1,000 left: still far from the end
        ([(1000, 0.0), (950, 0.5)], [POLL, POLL]),
        # 100/s with 20 left: due in 0.2 s
        ([(100, 0.0), (70, 0.3), (20, 0.8)], [POLL, POLL, pytest.approx(0.2)]),
        # 1,000/s with 16 left: not more often than POLL_MIN
        ([(2000, 0.0), (16, 1.984)], [POLL, POLL_MIN]),
        # none left, the notification not yet marked done: look again soon
        ([(50, 0.0), (0, 0.5), (0, 0.55)], [POLL, POLL_MIN, POLL_MIN]),
        # none left for longer than SETTLE (a later rung is waiting): back to the half second
        ([(50, 0.0), (0, 0.5), (0, 0.5 + SETTLE + 0.1)], [POLL, POLL_MIN, POLL]),
        # deliveries added (a rung started): the rate stays, the pause follows what is left
        ([(10, 0.0), (0, 0.1), (500, 1.0)], [POLL, POLL_MIN, POLL]),
    ],
)
def test_pace(reads: list[tuple[int, float]], pauses: list[float]) -> None:
    pace = Pace()
    assert [pace.next(left, now) for left, now in reads] == pauses
