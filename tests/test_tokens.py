"""Signed tokens in unsubscribe and confirmation links: they name the reader, hide the
address, and cannot be forged, moved to another list, or used after they expire."""

from __future__ import annotations

import pytest

from syndicator.errors import BadToken
from syndicator.mail.tokens import (
    confirm_token,
    read_confirm_token,
    read_unsubscribe_token,
    unsubscribe_signer,
    unsubscribe_token,
)

SECRET = b"a-secret-of-at-least-thirty-two-bytes!"
LIST = "<news.example.org>"


def test_an_unsubscribe_token_names_the_reader_without_showing_the_address() -> None:
    token = unsubscribe_token(SECRET, LIST, "A@Example.com")
    assert "example" not in token.lower()
    assert read_unsubscribe_token(SECRET, LIST, token) == "a@example.com"


@pytest.mark.parametrize("change", ["secret", "list", "flip", "truncate", "garbage"])
def test_a_forged_or_moved_unsubscribe_token_is_refused(change: str) -> None:
    token = unsubscribe_token(SECRET, LIST, "reader@example.com")
    secret, list_id = SECRET, LIST
    if change == "secret":
        secret = b"another-secret-of-thirty-two-bytes!!"
    elif change == "list":
        list_id = "<other.example.org>"
    elif change == "flip":
        token = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    elif change == "truncate":
        token = token[:10]
    else:
        token = "not a token at all/../"
    with pytest.raises(BadToken):
        read_unsubscribe_token(secret, list_id, token)


def test_a_confirmation_token_expires() -> None:
    token = confirm_token(SECRET, LIST, "reader@example.com", now=1_000_000)
    assert read_confirm_token(SECRET, LIST, token, max_age=3600, now=1_000_000 + 3599) == "reader@example.com"
    with pytest.raises(BadToken, match="expired"):
        read_confirm_token(SECRET, LIST, token, max_age=3600, now=1_000_000 + 3601)


def test_tokens_of_one_kind_do_not_open_the_other() -> None:
    unsubscribe = unsubscribe_token(SECRET, LIST, "reader@example.com")
    confirm = confirm_token(SECRET, LIST, "reader@example.com", now=1_000_000)
    with pytest.raises(BadToken):
        read_confirm_token(SECRET, LIST, unsubscribe, max_age=3600, now=1_000_000)
    with pytest.raises(BadToken):
        read_unsubscribe_token(SECRET, LIST, confirm)


def test_the_senders_signer_makes_exactly_the_unsubscribe_tokens() -> None:
    sign = unsubscribe_signer(SECRET, LIST)
    addresses = ["a@b.c", "Reader@Example.com", "x" * 64 + "@" + "d" * 200 + ".org", "jürgen@bücher.de",
                 "", "y" * 31 + "@z", "y" * 32 + "@z"]
    for address in addresses + [f"reader{n:07d}@example{n % 97}.com" for n in range(500)]:
        assert sign(address) == unsubscribe_token(SECRET, LIST, address), address
