from syndicator.mail.tokens import read_unsubscribe_token, unsubscribe_token


def test_token_round_trip() -> None:
    token = unsubscribe_token(b"k", "list", "A@Example.com")
    assert "example" not in token.lower()
    assert read_unsubscribe_token(b"k", "list", token) == "a@example.com"
