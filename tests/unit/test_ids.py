from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.common.clock import FakeClock
from orchestrator.common.ids import _encode, new_id


def test_ids_sort_in_creation_order_within_one_millisecond() -> None:
    clock = FakeClock()
    ids = [new_id("job", clock.now()) for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_ids_sort_across_milliseconds_and_survive_a_clock_step_back() -> None:
    clock = FakeClock()
    first = new_id("job", clock.now())
    clock.advance(0.002)
    second = new_id("job", clock.now())
    clock.advance(-0.010)
    third = new_id("job", clock.now())
    assert first < second < third


def test_an_id_carries_its_millisecond_in_crockford_base32() -> None:
    # Later than any id made before in this process (ids never go back in time).
    at = datetime(2200, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    made = new_id("dlv", at)
    prefix, _, digits = made.partition("_")
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    assert prefix == "dlv" and len(digits) == 26 and set(digits) <= set(alphabet)
    millis = 0
    for ch in digits[:10]:
        millis = millis * 32 + alphabet.index(ch)
    assert millis == int(at.timestamp() * 1000)


# Run in an interpreter of its own: forking this test process, whose other threads
# (store readers, watches) may hold a lock at that moment, can hang the child.
_FORK_TWICE = """
import json, multiprocessing, sys
from datetime import UTC, datetime

from orchestrator.common import ids


def made_in_child(at):
    ids._last = (0, 0)
    return [ids.new_id("job", datetime.fromtimestamp(at, UTC)) for _ in range(5)]


if __name__ == "__main__":
    at = float(sys.argv[1])
    ids.new_id("job", datetime.fromtimestamp(at, UTC))  # the parent's state, then fork
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as first, ctx.Pool(1) as second:
        one = first.apply(made_in_child, (at,))
        two = second.apply(made_in_child, (at,))
    print(json.dumps(one + two))
"""


def test_a_forked_child_does_not_repeat_its_parents_ids(tmp_path: Path) -> None:
    clock = FakeClock()
    clock.advance(7200.0)
    script = tmp_path / "fork_twice.py"
    script.write_text(_FORK_TWICE)
    # Two children forked from the same state: without a new seed each, they would
    # make the same ids.
    done = subprocess.run(
        [sys.executable, str(script), str(clock.now().timestamp())],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    made = json.loads(done.stdout)
    assert len(made) == 10
    assert len(set(made)) == 10


@given(millis=st.integers(0, (1 << 48) - 1), rand=st.integers(0, (1 << 80) - 1))
def test_ids_spell_the_number_in_crockford_base32(millis: int, rand: int) -> None:
    import base64

    rfc = base64.b32encode(((millis << 80) | rand).to_bytes(20, "big"))[6:]
    crockford = rfc.translate(
        bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789abcdefghjkmnpqrstvwxyz")
    )
    assert _encode(millis, rand) == crockford.decode("ascii")
