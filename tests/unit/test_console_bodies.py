"""How the console shows a stored callback body."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from receiver.console.bodies import HEX_BYTES, SHOWN_BYTES, show_body

JSON = {"content-type": "application/json"}


def test_json_is_indented_and_keeps_every_value() -> None:
    shown = show_body(b'{"id":"t-1","status":"done","urls":["a","b"]}', JSON)
    assert shown.kind == "json"
    assert shown.text.splitlines()[1] == '  "id": "t-1",'
    assert json.loads(shown.text) == {"id": "t-1", "status": "done", "urls": ["a", "b"]}


def test_json_is_recognised_whatever_the_sender_called_it() -> None:
    assert show_body(b'{"a": 1}', {"Content-Type": "text/plain"}).kind == "json"


def test_a_form_body_shows_one_field_per_line() -> None:
    shown = show_body(
        b"task_id=abc&status=ok&note=a%3Cb",
        {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    assert shown.kind == "form"
    assert shown.text == "task_id = abc\nstatus = ok\nnote = a<b"


def test_broken_json_is_shown_as_it_came() -> None:
    shown = show_body(b'{"id": "t-1", <script>', JSON)
    assert (shown.kind, shown.text) == ("text", '{"id": "t-1", <script>')


def test_binary_is_a_hex_dump_of_its_start() -> None:
    body = bytes(range(256)) * 40
    shown = show_body(body, {})
    assert shown.kind == "binary"
    assert shown.text.startswith("00000000  00 01 02 03")
    assert shown.cut == len(body) - HEX_BYTES
    assert len(shown.text.splitlines()) == HEX_BYTES // 16


def test_a_huge_body_is_cut_saying_how_much_was_left_out() -> None:
    body = b"x" * (SHOWN_BYTES + 10)
    shown = show_body(body, JSON)
    assert (shown.kind, len(shown.text), shown.cut, shown.size) == (
        "text",
        SHOWN_BYTES,
        10,
        SHOWN_BYTES + 10,
    )


def test_an_empty_body_says_so() -> None:
    assert show_body(b"", JSON).kind == "empty"


@given(st.binary(max_size=2048), st.sampled_from([{}, JSON]))
def test_any_body_is_shown_without_error_and_its_size_told(
    body: bytes, headers: dict[str, str]
) -> None:
    shown = show_body(body, headers)
    assert shown.size == len(body)
    assert shown.cut >= 0
