"""Properties of the two parsers that see attacker-chosen input first: the token endpoint's
form parser (RFC 6749 §3.2) and the access-token verifier (RFC 7515, RFC 8725); and of the
``iat`` a token is minted with against an account's revocation cut-off.

Hypothesis runs derandomized (the same examples on every run, so CI never flakes on a new
seed) and without its example database (nothing is written next to the sources).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import string
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from centrali.oauth.errors import InvalidRequestError, OAuthError
from centrali.oauth.keys import KeySet, SigningKey
from centrali.oauth.token_endpoint import FORM_CONTENT_TYPE, parse_form
from centrali.oauth.tokens import (
    InvalidTokenError,
    TokenSubject,
    cut_off,
    issue_access_token,
    verify_access_token,
)
from tests.unit.oauth.fakes import AUDIENCE, CLIENT_ID, ISSUER, NOW

PROPERTY = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    # The key fixtures are session-scoped; nothing is shared between examples.
    suppress_health_check=[HealthCheck.too_slow],
)
MAX_PARAMS = 32  # token_endpoint._MAX_PARAMS
TTL = 25200

# Text a UTF-8 form can carry: every code point except the surrogates.
form_text = st.text(st.characters(codec="utf-8"), max_size=40)


# --- parse_form -------------------------------------------------------------------------------


def _content_types() -> st.SearchStrategy[str | None]:
    form_spellings = st.sampled_from(
        [
            FORM_CONTENT_TYPE,
            FORM_CONTENT_TYPE.upper(),
            f"{FORM_CONTENT_TYPE}; charset=utf-8",
            f" {FORM_CONTENT_TYPE} ;charset=UTF-8",
            f"{FORM_CONTENT_TYPE};",
        ]
    )
    with_params = st.builds(lambda params: f"{FORM_CONTENT_TYPE};{params}", st.text(max_size=30))
    others = st.sampled_from(
        ["", "application/json", "text/plain", "multipart/form-data; boundary=x", "*/*"]
    )
    return st.one_of(st.none(), st.text(max_size=60), form_spellings, with_params, others)


def _pairs_body(pairs: list[tuple[str, str]]) -> bytes:
    return urlencode(pairs).encode()


def _bodies() -> st.SearchStrategy[bytes]:
    pair = st.tuples(
        st.sampled_from(["grant_type", "client_id", "client_secret", "scope", ""]) | form_text,
        form_text,
    )
    return st.one_of(
        st.binary(max_size=400),
        st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.lists(pair, max_size=40).map(_pairs_body),
        # Raw separators, percent signs and pluses around ordinary names.
        st.text(alphabet="&=%+;ab_0F", max_size=80).map(str.encode),
    )


@PROPERTY
@given(content_type=_content_types(), body=_bodies())
def test_parse_form_returns_a_form_or_raises_an_oauth_error(
    content_type: str | None, body: bytes
) -> None:
    try:
        form = parse_form(content_type, body)
    except OAuthError as exc:
        # A protocol error the dispatcher can answer as it is; never a bare 500.
        assert exc.status_code == 400
        assert exc.body()["error"] == "invalid_request"
        return
    assert isinstance(form, dict)
    assert len(form) <= MAX_PARAMS
    for name, value in form.items():
        assert isinstance(name, str) and isinstance(value, str)
        assert value != ""  # §3.1: a parameter without a value is omitted


@PROPERTY
@given(
    form=st.dictionaries(form_text, form_text, max_size=MAX_PARAMS),
    quote_via=st.sampled_from([quote_plus, quote]),
    content_type=st.sampled_from(
        [
            FORM_CONTENT_TYPE,
            f"{FORM_CONTENT_TYPE}; charset=utf-8",
            "Application/X-WWW-Form-URLEncoded",
        ]
    ),
)
def test_parse_form_round_trips_urlencoded_dicts(
    form: dict[str, str], quote_via: Any, content_type: str
) -> None:
    body = urlencode(form, quote_via=quote_via).encode("ascii")
    assert parse_form(content_type, body) == {k: v for k, v in form.items() if v != ""}


@PROPERTY
@given(count=st.integers(MAX_PARAMS + 1, 200), value=form_text)
def test_parse_form_refuses_more_than_the_parameter_limit(count: int, value: str) -> None:
    body = urlencode({f"p{i}": value for i in range(count)}).encode("ascii")
    with pytest.raises(InvalidRequestError):
        parse_form(FORM_CONTENT_TYPE, body)


def _percent_encode_every_byte(text: str) -> str:
    return "".join(f"%{byte:02X}" for byte in text.encode("utf-8"))


@PROPERTY
@given(data=st.data(), form=st.dictionaries(form_text, form_text, min_size=1, max_size=20))
def test_parse_form_always_refuses_a_repeated_parameter(
    data: st.DataObject, form: dict[str, str]
) -> None:
    pairs = [quote_plus(k) + "=" + quote_plus(v) for k, v in form.items()]
    name = data.draw(st.sampled_from(sorted(form)), label="repeated")
    # The repeat may be spelled differently on the wire: what counts is the decoded name.
    spelled = data.draw(
        st.sampled_from([quote_plus(name), quote(name, safe=""), _percent_encode_every_byte(name)]),
        label="spelling",
    )
    value = data.draw(form_text, label="value")  # the same value, another, or empty
    position = data.draw(st.integers(0, len(pairs)), label="position")
    pairs.insert(position, f"{spelled}={quote_plus(value)}")
    with pytest.raises(InvalidRequestError):
        parse_form(FORM_CONTENT_TYPE, "&".join(pairs).encode("ascii"))


# --- the token verifier -----------------------------------------------------------------------

SUBJECT = TokenSubject(
    subject=CLIENT_ID,
    client_id=CLIENT_ID,
    workspace="acme-corp",
    is_service_account=True,
    groups=("api-users",),
    scope="openid",
)
B64URL = string.ascii_letters + string.digits + "-_"
ALGS = ["none", "None", "NONE", "", "HS256", "HS384", "HS512", "RS384", "RS512", "PS256",
        "ES256", "EdDSA", "rs256", "RS256 "]  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | form_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(form_text, inner, max_size=3),
    max_leaves=6,
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json_segment(obj: Any) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


def _verify(token: str, keys: KeySet) -> Any:
    return verify_access_token(token, keys=keys, issuer=ISSUER, audience=AUDIENCE, now=NOW + 1)


@pytest.fixture(scope="module")
def genuine(key_set: KeySet) -> str:
    token = issue_access_token(
        SUBJECT, keys=key_set, issuer=ISSUER, audience=AUDIENCE, ttl=TTL, now=NOW
    ).token
    assert _verify(token, key_set).subject == CLIENT_ID  # the base the mutations start from
    return token


def _hmac_segment(alg: str, secret: bytes, signing_input: str) -> str:
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
    return _b64(hmac.new(secret, signing_input.encode(), digest.get(alg, hashlib.sha256)).digest())


@st.composite
def _mutated(draw: st.DrawFn, token: str, ours: SigningKey, other: SigningKey) -> str:
    """``token`` after one to three mutations, each of one of the kinds below."""
    for _ in range(draw(st.integers(1, 3), label="mutations")):
        kind = draw(
            st.sampled_from(
                ["replace", "insert", "delete", "flip", "segments", "header", "claims", "resign"]
            ),
            label="kind",
        )
        event(f"mutation: {kind}")
        token = _MUTATIONS[kind](draw, token, ours, other)
    return token


def _char(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(B64URL + ".=") | st.characters(codec="utf-8"), label="char")


def _replace(draw: st.DrawFn, token: str, _ours: SigningKey, _other: SigningKey) -> str:
    if not token:
        return _char(draw)
    i = draw(st.integers(0, len(token) - 1), label="at")
    others = st.sampled_from([c for c in B64URL + ".=" if c != token[i]])
    char = draw(others | st.characters(codec="utf-8", exclude_characters=token[i]), label="by")
    return token[:i] + char + token[i + 1 :]


def _insert(draw: st.DrawFn, token: str, _ours: SigningKey, _other: SigningKey) -> str:
    i = draw(st.integers(0, len(token)), label="at")
    return token[:i] + _char(draw) + token[i:]


def _delete(draw: st.DrawFn, token: str, _ours: SigningKey, _other: SigningKey) -> str:
    if not token:
        return token
    i = draw(st.integers(0, len(token) - 1), label="at")
    return token[:i] + token[i + 1 :]


def _flip(draw: st.DrawFn, token: str, _ours: SigningKey, _other: SigningKey) -> str:
    # One bit of the wire bytes; read back as latin-1, as a server reads a header.
    raw = bytearray(token.encode("utf-8"))
    if not raw:
        return token
    i = draw(st.integers(0, len(raw) - 1), label="byte")
    raw[i] ^= 1 << draw(st.integers(0, 7), label="bit")
    return raw.decode("latin-1")


def _segments(draw: st.DrawFn, token: str, _ours: SigningKey, _other: SigningKey) -> str:
    parts = token.split(".")
    shape = draw(st.sampled_from(["permute", "duplicate", "drop", "extra"]), label="shape")
    if shape == "permute":
        parts = draw(st.permutations(parts), label="order")
    elif shape == "duplicate" and parts:
        parts.insert(draw(st.integers(0, len(parts))), draw(st.sampled_from(parts)))
    elif shape == "drop" and parts:
        del parts[draw(st.integers(0, len(parts) - 1))]
    else:
        parts.append(draw(st.sampled_from(["", "e30", *parts]), label="extra"))
    return ".".join(parts)


def _decoded_parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header, payload = (json.loads(_unb64(p)) for p in parts[:2])
    except ValueError:
        return None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return None
    return header, payload, parts[2]


def _header(draw: st.DrawFn, token: str, ours: SigningKey, _other: SigningKey) -> str:
    """Change the header, re-encode it, and sign the result the ways an attacker might."""
    decoded = _decoded_parts(token)
    if decoded is None:
        return token
    header, _payload, signature = decoded
    change = draw(st.sampled_from(["alg", "drop-alg", "typ", "kid", "add", "drop"]), label="hdr")
    if change == "alg":
        header["alg"] = draw(st.sampled_from(ALGS), label="alg")
    elif change == "drop-alg":
        header.pop("alg", None)
    elif change == "typ":
        header["typ"] = draw(
            st.sampled_from(["JWT", "at+JWT", "application/jwt", "", None]) | form_text
        )
    elif change == "kid":
        header["kid"] = draw(st.sampled_from([None, "", 1, ours.kid + "x"]) | form_text)
    elif change == "add":
        name = draw(st.sampled_from(["jku", "jwk", "x5u", "x5c", "crit", "b64", "zip"]))
        header[name] = draw(JSON_VALUES | st.just(ours.public_jwk) | st.just(False))
    elif header:
        header.pop(draw(st.sampled_from(sorted(header))), None)
    signing_input = f"{_json_segment(header)}.{token.split('.')[1]}"
    pem = ours.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    sign = draw(st.sampled_from(["keep", "empty", "hmac-public-pem", "hmac-jwk", "hmac-empty"]))
    alg = str(header.get("alg"))
    if sign == "empty":
        signature = ""
    elif sign == "hmac-public-pem":  # key confusion: our public key as the HMAC secret
        signature = _hmac_segment(alg, pem, signing_input)
    elif sign == "hmac-jwk":
        signature = _hmac_segment(alg, json.dumps(ours.public_jwk).encode(), signing_input)
    elif sign == "hmac-empty":
        signature = _hmac_segment(alg, b"", signing_input)
    return f"{signing_input}.{signature}"


def _claims(draw: st.DrawFn, token: str, _ours: SigningKey, _other: SigningKey) -> str:
    """Change, add or drop one claim and keep the old signature."""
    decoded = _decoded_parts(token)
    if decoded is None:
        return token
    header, payload, signature = decoded
    names = sorted({*payload, "workspace", "groups", "isServiceAccount", "exp", "admin", "nbf"})
    name = draw(st.sampled_from(names), label="claim")
    if draw(st.booleans(), label="drop") and name in payload:
        del payload[name]
    else:
        payload[name] = draw(JSON_VALUES, label="value")
    return f"{token.split('.')[0]}.{_json_segment(payload)}.{signature}"


def _resign(draw: st.DrawFn, token: str, ours: SigningKey, other: SigningKey) -> str:
    """Signed properly, but by a key that is not in our key set."""
    decoded = _decoded_parts(token)
    if decoded is None:
        return token
    header, payload, _signature = decoded
    kid = draw(st.sampled_from([ours.kid, other.kid, None]), label="kid")
    headers = {"typ": header.get("typ", "at+jwt"), **({"kid": kid} if kid else {})}
    # PyJWS, not jwt.encode: an earlier "claims" mutation may have left a claim PyJWT will
    # not encode (a non-string "iss"), and the signature is what this mutation is about.
    claims = json.dumps(payload, separators=(",", ":")).encode()
    return jwt.PyJWS().encode(claims, other.private_key, algorithm="RS256", headers=headers)


_MUTATIONS = {
    "replace": _replace,
    "insert": _insert,
    "delete": _delete,
    "flip": _flip,
    "segments": _segments,
    "header": _header,
    "claims": _claims,
    "resign": _resign,
}


def _same_jws(mutated: str, genuine: str) -> bool:
    """The very token we issued, spelled the same but for trailing '=' on the signature,
    which PyJWT tolerates on purpose (some issuers pad): not a change of content."""
    m, g = mutated.split("."), genuine.split(".")
    return len(m) == 3 and m[:2] == g[:2] and m[2].rstrip("=") == g[2]


@PROPERTY
@given(data=st.data())
def test_verifier_refuses_every_mutation_of_a_genuine_token(
    data: st.DataObject,
    genuine: str,
    key_set: KeySet,
    signing_key: SigningKey,
    other_key: SigningKey,
) -> None:
    mutated = data.draw(_mutated(genuine, signing_key, other_key), label="token")
    assume(not _same_jws(mutated, genuine))
    with pytest.raises(InvalidTokenError):  # never accepted, never another exception
        _verify(mutated, key_set)


@PROPERTY
@given(token=st.text(st.sampled_from(B64URL + ".=") | st.characters(codec="utf-8"), max_size=400))
def test_verifier_refuses_arbitrary_text(token: str, key_set: KeySet) -> None:
    with pytest.raises(InvalidTokenError):
        _verify(token, key_set)


@pytest.mark.parametrize("where", [0, 5, -1], ids=["start", "header", "end"])
def test_verifier_refuses_a_token_with_a_lone_surrogate(
    where: int, genuine: str, key_set: KeySet
) -> None:
    # PyJWT encodes the str as UTF-8 before its own checks, so a lone surrogate used to escape
    # as UnicodeEncodeError. Not reachable over HTTP (headers arrive as latin-1, forms as strict
    # UTF-8), but centrali.verify.TokenVerifier is a library: a caller may pass any str.
    at = where % (len(genuine) + 1)
    with pytest.raises(InvalidTokenError):
        _verify(genuine[:at] + "\ud800" + genuine[at:], key_set)


# --- the revocation cut-off for tokens without an epoch ---------------------------------------

# Epoch seconds from 2001 to 2096, to the microsecond and beyond (any float in range).
moments = st.floats(1e9, 4e9, allow_nan=False, allow_infinity=False)


@PROPERTY
@given(now=moments, revoked_later_ms=st.integers(0, 10_000_000))
def test_every_token_minted_before_a_revoke_is_cut_off(now: float, revoked_later_ms: int) -> None:
    iat = int(now)  # tokens carry whole seconds
    assert cut_off(iat, math.floor(now * 1000) + revoked_later_ms)


@PROPERTY
@given(now=moments, earlier_ms=st.integers(1000, 10_000_000))
def test_a_token_minted_seconds_after_a_revoke_is_not_cut_off(now: float, earlier_ms: int) -> None:
    assert not cut_off(int(now), math.floor(now * 1000) - earlier_ms)
