"""centrali.oauth.tokens: RS256 access tokens (RFC 9068) and their verification (RFC 8725)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from centrali.oauth.keys import KeySet, SigningKey
from centrali.oauth.tokens import (
    InvalidTokenError,
    TokenError,
    TokenExpiredError,
    TokenSubject,
    VerifiedToken,
    cut_off,
    issue_access_token,
    revoked_by_account,
    verify_access_token,
)
from tests.unit.oauth.fakes import AUDIENCE, CLIENT_ID, ISSUER, NOW, pyjwt_decode_at

TTL = 25200
SUBJECT = TokenSubject(
    subject=CLIENT_ID,
    client_id=CLIENT_ID,
    workspace="acme-corp",
    is_service_account=True,
    groups=("api-users", "developers"),
    scope="openid",
)


def _issue(keys: KeySet, who: TokenSubject = SUBJECT, now: float = NOW, ttl: int = TTL) -> str:
    return issue_access_token(
        who, keys=keys, issuer=ISSUER, audience=AUDIENCE, ttl=ttl, now=now
    ).token


def _verify(token: str, keys: KeySet, now: float = NOW + 1, leeway: int = 0) -> Any:
    return verify_access_token(
        token, keys=keys, issuer=ISSUER, audience=AUDIENCE, now=now, leeway=leeway
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(obj: dict[str, Any]) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


def _unb64(segment: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return decoded


def _claims(**changes: Any) -> dict[str, Any]:
    """Valid claims for ``SUBJECT`` issued at ``NOW``; a value of ``None`` drops the claim."""
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": CLIENT_ID,
        "aud": AUDIENCE,
        "iat": int(NOW),
        "exp": int(NOW) + TTL,
        "jti": "jti-1",
        "client_id": CLIENT_ID,
        "scope": "openid",
        "workspace": "acme-corp",
        "isServiceAccount": "true",
        "groups": ["api-users"],
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _rs256(key: SigningKey, claims: dict[str, Any], **header: Any) -> str:
    """Signed with ``key``; header defaults to our kid and ``typ: at+jwt``; None drops a field."""
    headers = {"kid": key.kid, "typ": "at+jwt", **header}
    # PyJWT adds "typ": "JWT" unless typ is given; a falsy typ makes it leave typ out.
    headers = {k: v for k, v in headers.items() if v is not None or k == "typ"}
    token = jwt.encode(claims, key.private_key, algorithm="RS256", headers=headers)
    expected = {"alg": "RS256", **{k: v for k, v in headers.items() if v is not None}}
    assert jwt.get_unverified_header(token) == expected
    return token


# --- round trip -------------------------------------------------------------------------------


def test_issued_token_verifies_and_carries_the_subject(key_set: KeySet) -> None:
    verified = _verify(_issue(key_set), key_set)
    assert verified.subject == CLIENT_ID
    assert verified.client_id == CLIENT_ID
    assert verified.workspace == "acme-corp"
    assert verified.is_service_account is True
    assert verified.groups == ("api-users", "developers")
    assert verified.scope == "openid"
    assert verified.issued_at == int(NOW)
    assert verified.expires_at == int(NOW) + TTL


def test_issued_token_has_rs256_at_jwt_header_with_our_kid(
    key_set: KeySet, signing_key: SigningKey
) -> None:
    header = jwt.get_unverified_header(_issue(key_set))
    assert header == {"alg": "RS256", "typ": "at+jwt", "kid": signing_key.kid}


def test_issued_claims_are_exactly_the_contract_claims(key_set: KeySet) -> None:
    issued = issue_access_token(
        SUBJECT, keys=key_set, issuer=ISSUER, audience=AUDIENCE, ttl=TTL, now=NOW + 0.75
    )
    claims = jwt.decode(
        issued.token,
        key_set.signing.public_key,
        algorithms=["RS256"],
        audience=AUDIENCE,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims == {
        "iss": ISSUER,
        "sub": CLIENT_ID,
        "aud": AUDIENCE,
        "iat": int(NOW),
        "exp": int(NOW) + TTL,
        "jti": issued.jti,
        "client_id": CLIENT_ID,
        "scope": "openid",
        "workspace": "acme-corp",
        "isServiceAccount": "true",
        "groups": ["api-users", "developers"],
    }
    assert issued.expires_in == TTL
    assert issued.issued_at == int(NOW)


@pytest.mark.parametrize(
    ("is_service_account", "flag"),
    [pytest.param(True, "true", id="service-account"), pytest.param(False, "false", id="user")],
)
def test_is_service_account_is_a_string_claim(
    key_set: KeySet, is_service_account: bool, flag: str
) -> None:
    who = TokenSubject(CLIENT_ID, CLIENT_ID, "acme-corp", is_service_account, (), "openid")
    token = _issue(key_set, who)
    assert _unb64(token.split(".")[1])["isServiceAccount"] == flag
    assert _unb64(token.split(".")[1])["groups"] == []
    assert _verify(token, key_set).is_service_account is is_service_account


def test_each_token_gets_its_own_jti(key_set: KeySet) -> None:
    first = issue_access_token(
        SUBJECT, keys=key_set, issuer=ISSUER, audience=AUDIENCE, ttl=TTL, now=NOW
    )
    second = issue_access_token(
        SUBJECT, keys=key_set, issuer=ISSUER, audience=AUDIENCE, ttl=TTL, now=NOW
    )
    assert first.jti and second.jti
    assert first.jti != second.jti
    assert _verify(first.token, key_set).jti == first.jti


@pytest.mark.parametrize("ttl", [60, 600, 25200], ids=["1min", "10min", "7h"])
def test_exp_is_iat_plus_ttl(key_set: KeySet, ttl: int) -> None:
    verified = _verify(_issue(key_set, ttl=ttl), key_set)
    assert verified.expires_at - verified.issued_at == ttl


def test_token_of_an_older_verification_key_still_verifies(
    signing_key: SigningKey, other_key: SigningKey
) -> None:
    old_token = _issue(KeySet.of(other_key))
    rotated = KeySet.of(signing_key, [other_key])
    assert _verify(old_token, rotated).subject == CLIENT_ID


def test_application_at_jwt_typ_is_accepted(key_set: KeySet, signing_key: SigningKey) -> None:
    # RFC 9068 §4: "at+jwt" or "application/at+jwt".
    token = _rs256(signing_key, _claims(), typ="application/at+jwt")
    assert _verify(token, key_set).subject == CLIENT_ID


# --- refusals ---------------------------------------------------------------------------------


def _alg_none(key: SigningKey, _other: SigningKey) -> str:
    header = {"alg": "none", "typ": "at+jwt", "kid": key.kid}
    return f"{_segment(header)}.{_segment(_claims())}."


def _hs256_with_public_pem(key: SigningKey, _other: SigningKey) -> str:
    # The classic key-confusion attack: HMAC keyed with our published public key.
    pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "at+jwt", "kid": key.kid}
    signing_input = f"{_segment(header)}.{_segment(_claims())}"
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _unknown_kid(_key: SigningKey, other: SigningKey) -> str:
    return _rs256(other, _claims(), kid=other.kid)


def _no_kid(key: SigningKey, _other: SigningKey) -> str:
    return _rs256(key, _claims(), kid=None)


def _foreign_key_with_our_kid(key: SigningKey, other: SigningKey) -> str:
    return _rs256(other, _claims(), kid=key.kid)


def _tampered_payload(key: SigningKey, _other: SigningKey) -> str:
    header, _payload, signature = _rs256(key, _claims()).split(".")
    return f"{header}.{_segment(_claims(workspace='evil-corp'))}.{signature}"


def _stripped_signature(key: SigningKey, _other: SigningKey) -> str:
    header, payload, _signature = _rs256(key, _claims()).split(".")
    return f"{header}.{payload}."


def _claims_case(**changes: Any) -> Callable[[SigningKey, SigningKey], str]:
    return lambda key, _other: _rs256(key, _claims(**changes))


def _header_case(**header: Any) -> Callable[[SigningKey, SigningKey], str]:
    return lambda key, _other: _rs256(key, _claims(), **header)


REFUSED = [
    pytest.param(_alg_none, id="alg-none"),
    pytest.param(_hs256_with_public_pem, id="hs256-keyed-with-public-pem"),
    pytest.param(_unknown_kid, id="unknown-kid"),
    pytest.param(_no_kid, id="no-kid"),
    pytest.param(_foreign_key_with_our_kid, id="foreign-key-our-kid"),
    pytest.param(_tampered_payload, id="tampered-payload"),
    pytest.param(_stripped_signature, id="signature-stripped"),
    pytest.param(_header_case(typ="JWT"), id="typ-JWT"),
    pytest.param(_header_case(typ=None), id="typ-missing"),
    pytest.param(_header_case(typ="id_token+jwt"), id="typ-other"),
    pytest.param(_claims_case(iss="https://evil.example"), id="wrong-iss"),
    pytest.param(_claims_case(iss=None), id="missing-iss"),
    pytest.param(_claims_case(aud="https://other.example"), id="wrong-aud"),
    pytest.param(_claims_case(aud=None), id="missing-aud"),
    pytest.param(_claims_case(workspace=None), id="missing-workspace"),
    pytest.param(_claims_case(isServiceAccount=None), id="missing-isServiceAccount"),
    pytest.param(_claims_case(sub=None), id="missing-sub"),
    pytest.param(_claims_case(exp=None), id="missing-exp"),
    pytest.param(_claims_case(iat=None), id="missing-iat"),
    pytest.param(_claims_case(isServiceAccount=True), id="isServiceAccount-boolean"),
    pytest.param(_claims_case(isServiceAccount="yes"), id="isServiceAccount-yes"),
    pytest.param(_claims_case(groups="api-users"), id="groups-not-a-list"),
    pytest.param(_claims_case(workspace=7), id="workspace-not-a-string"),
    pytest.param(_claims_case(exp=str(int(NOW) + TTL)), id="exp-a-string"),
    pytest.param(_claims_case(iat=int(NOW) + 3600, exp=int(NOW) + 7200), id="iat-in-future"),
    pytest.param(_claims_case(iat=str(int(NOW))), id="iat-a-string"),
    pytest.param(_claims_case(iat=True), id="iat-boolean"),
    pytest.param(_claims_case(iat=float("inf")), id="iat-infinite"),
    pytest.param(_claims_case(iat=float("nan")), id="iat-nan"),
    pytest.param(_claims_case(exp=float(int(NOW) + TTL)), id="exp-a-float"),
]


@pytest.mark.parametrize("build", REFUSED)
def test_refused_tokens(
    build: Callable[[SigningKey, SigningKey], str],
    key_set: KeySet,
    signing_key: SigningKey,
    other_key: SigningKey,
) -> None:
    token = build(signing_key, other_key)
    with pytest.raises(InvalidTokenError) as info:
        _verify(token, key_set)
    assert info.value.reason


@pytest.mark.parametrize(
    "token",
    ["", "not-a-jwt", "a.b.c", "a.b", "....", "eyJhbGciOiJSUzI1NiJ9.e30"],
    ids=["empty", "garbage", "abc", "two-parts", "dots", "header-only-alg"],
)
def test_malformed_tokens_are_invalid(token: str, key_set: KeySet) -> None:
    with pytest.raises(InvalidTokenError):
        _verify(token, key_set)


def test_the_control_token_of_the_refusal_table_is_accepted(
    key_set: KeySet, signing_key: SigningKey
) -> None:
    # Guards the table above: its cases fail for the reason they name, not for a bad base.
    assert _verify(_rs256(signing_key, _claims()), key_set).subject == CLIENT_ID


# --- expiry -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "now",
    [NOW + TTL, NOW + TTL + 1, NOW + 10 * TTL],
    ids=["at-exp", "one-second-after", "long-after"],
)
def test_token_at_or_past_exp_is_expired(key_set: KeySet, now: float) -> None:
    token = _issue(key_set)
    with pytest.raises(TokenExpiredError):
        _verify(token, key_set, now=now)


def test_token_one_second_before_exp_is_valid(key_set: KeySet) -> None:
    assert _verify(_issue(key_set), key_set, now=NOW + TTL - 1).subject == CLIENT_ID


def test_leeway_extends_exp(key_set: KeySet) -> None:
    token = _issue(key_set)
    assert _verify(token, key_set, now=NOW + TTL + 5, leeway=30).subject == CLIENT_ID
    with pytest.raises(TokenExpiredError):
        _verify(token, key_set, now=NOW + TTL + 31, leeway=30)


def test_expired_error_is_a_token_error_but_not_invalid() -> None:
    assert issubclass(TokenExpiredError, TokenError)
    assert not issubclass(TokenExpiredError, InvalidTokenError)


def test_expired_forgery_is_invalid_not_expired(
    key_set: KeySet, signing_key: SigningKey, other_key: SigningKey
) -> None:
    # The signature is checked before exp: a forger must not learn "expired".
    forged = _rs256(other_key, _claims(exp=int(NOW) - 10), kid=signing_key.kid)
    with pytest.raises(InvalidTokenError):
        _verify(forged, key_set)


# --- the account epoch and the revocation cut-off ----------------------------------------------

S = 1_700_000_000  # a whole second; cut-offs are epoch milliseconds


@pytest.mark.parametrize(
    ("iat", "cutoff_ms", "dead"),
    [
        pytest.param(S, 0, False, id="never-revoked"),
        pytest.param(S, S * 1000, True, id="whole-second-at-the-cutoff"),
        pytest.param(S, S * 1000 + 500, True, id="whole-second-before-the-cutoff"),
        pytest.param(S, S * 1000 - 1, False, id="whole-second-after-the-cutoff"),
        pytest.param(S + 0.2, S * 1000 + 200, True, id="fraction-at-the-cutoff"),
        pytest.param(S + 0.201, S * 1000 + 200, False, id="fraction-just-after-the-cutoff"),
    ],
)
def test_cut_off_kills_tokens_issued_at_or_before_the_cutoff_millisecond(
    iat: float, cutoff_ms: int, dead: bool
) -> None:
    assert cut_off(iat, cutoff_ms) is dead


def _token(key_set: KeySet, epoch: int | None, now: float = NOW) -> VerifiedToken:
    who = replace(SUBJECT, epoch=epoch)
    issued = issue_access_token(
        who, keys=key_set, issuer=ISSUER, audience=AUDIENCE, ttl=TTL, now=now
    )
    return _verify(issued.token, key_set, now=now)


@pytest.mark.parametrize(
    ("token_epoch", "account_epoch", "cutoff_ms", "dead"),
    [
        pytest.param(0, 0, 0, False, id="never-revoked"),
        pytest.param(0, 1, 0, True, id="revoked-since"),
        pytest.param(3, 3, 0, False, id="issued-after-the-last-revoke"),
        # The epoch alone decides: a cut-off stamped by a clock that is ahead (after the
        # token's iat) does not kill a token of the current epoch ...
        pytest.param(3, 3, (int(NOW) + 5) * 1000, False, id="cutoff-clock-ahead"),
        # ... and one stamped by a clock that is behind does not save a revoked token.
        pytest.param(2, 3, (int(NOW) - 5) * 1000, True, id="cutoff-clock-behind"),
    ],
)
def test_tokens_with_an_epoch_die_exactly_when_the_account_epoch_moves_on(
    key_set: KeySet, token_epoch: int, account_epoch: int, cutoff_ms: int, dead: bool
) -> None:
    token = _token(key_set, token_epoch)
    assert token.epoch == token_epoch
    assert revoked_by_account(token, epoch=account_epoch, cutoff_ms=cutoff_ms) is dead


@pytest.mark.parametrize(
    ("cutoff_ms", "dead"),
    [
        pytest.param(0, False, id="never-revoked"),
        pytest.param(int(NOW) * 1000, True, id="revoked-in-its-second"),
        pytest.param(int(NOW) * 1000 - 1, False, id="revoked-before-it"),
    ],
)
def test_tokens_without_an_epoch_die_at_the_time_cutoff(
    key_set: KeySet, cutoff_ms: int, dead: bool
) -> None:
    token = _token(key_set, None)
    assert token.epoch is None and "accountEpoch" not in token.claims
    assert revoked_by_account(token, epoch=7, cutoff_ms=cutoff_ms) is dead


def test_issued_tokens_have_a_whole_second_iat_and_verify_without_leeway(
    key_set: KeySet, signing_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = NOW + 0.5
    issued = issue_access_token(
        replace(SUBJECT, epoch=4), keys=key_set, issuer=ISSUER, audience=AUDIENCE, ttl=TTL, now=now
    )
    assert issued.issued_at == int(NOW)
    claims = pyjwt_decode_at(
        issued.token, signing_key.public_key, signing_key.alg, now, monkeypatch
    )
    assert (claims["iat"], claims["exp"], claims["accountEpoch"]) == (
        int(NOW),
        int(NOW) + TTL,
        4,
    )


def test_the_verifier_accepts_a_fractional_iat(key_set: KeySet, signing_key: SigningKey) -> None:
    verified = _verify(_rs256(signing_key, _claims(iat=NOW + 0.25)), key_set)
    assert verified.issued_at == NOW + 0.25
