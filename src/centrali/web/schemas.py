"""Request bodies of the management API; wire names live here only, as aliases."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from centrali.services.validation import json_too_deep, too_deep_message


def _text_unstorable(text: str) -> bool:
    """NUL or an unpaired surrogate: neither PostgreSQL text nor UTF-8 can hold them, so
    they are refused at the door rather than failing in the store."""
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _unstorable(value: Any, where: str) -> str | None:
    """What is wrong with a field's value, or None: objects and arrays nested deeper than
    MAX_JSON_DEPTH (refused before anything recurses into them), or where a NUL or an
    unpaired surrogate hides. Iterative, so no input can exhaust the stack here."""
    if json_too_deep(value):
        return too_deep_message(where)
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, str):
            if _text_unstorable(item):
                return f"{at}: text must not contain NUL or unpaired surrogates"
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                if isinstance(key, str) and _text_unstorable(key):
                    return f"{at}: text must not contain NUL or unpaired surrogates"
                stack.append((child, f"{at}.{key}"))
        elif isinstance(item, list):
            stack.extend((child, f"{at}[{i}]") for i, child in reversed(list(enumerate(item))))
    return None


class _Body(BaseModel):
    # Unknown fields and wrong JSON types are refused rather than coerced or ignored.
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    @model_validator(mode="after")
    def _storable_text(self) -> Self:
        for name, field in type(self).model_fields.items():
            found = _unstorable(getattr(self, name), field.alias or name)
            if found:
                raise ValueError(found)
        return self


class ServiceAccountCreate(_Body):
    name: str = Field(max_length=10_000)
    description: str | None = Field(None, max_length=100_000)
    grant_types: list[str] | None = Field(None, max_length=16)
    scope: str | None = Field(None, max_length=1_000)
    groups: list[str] | None = Field(None, max_length=1_000)
    # ISO 8601 with an offset; checked by the service (strict mode takes no str for datetime).
    secret_expires_at: str | None = Field(None, alias="secretExpiresAt", max_length=64)


class NameUpdate(_Body):
    name: str = Field(max_length=10_000)


class DescriptionUpdate(_Body):
    description: str | None = Field(max_length=100_000)


class GroupsUpdate(_Body):
    groups: list[str] = Field(max_length=1_000)


class RotateRequest(_Body):
    revoke_tokens: bool = Field(False, alias="revokeTokens")
    grace_period_seconds: int = Field(0, alias="gracePeriodSeconds", ge=0, le=7 * 86400)
    expires_at: str | None = Field(None, alias="expiresAt", max_length=64)


class SecretCreate(_Body):
    expires_at: str | None = Field(None, alias="expiresAt", max_length=64)


class KeyCreate(_Body):
    # Any JSON value: oauth.jwk says why anything but one public JWK is refused.
    jwk: Any
    expires_at: str | None = Field(None, alias="expiresAt", max_length=64)


class FederatedCredentialCreate(_Body):
    # Lengths are checked by the service, with messages naming the field.
    name: str = Field(max_length=10_000)
    issuer: str = Field(max_length=10_000)
    subject: str = Field(max_length=10_000)
    audience: str | None = Field(None, max_length=10_000)
    expires_at: str | None = Field(None, alias="expiresAt", max_length=64)


class FieldIn(_Body):
    name: str = Field(max_length=200)
    type: str = Field(max_length=32)
    required: bool = False


class StructureCreate(_Body):
    slug: str = Field(max_length=200)
    name: str = Field(max_length=10_000)
    description: str | None = Field(None, max_length=100_000)
    fields: list[FieldIn] = Field(default_factory=list, max_length=1_000)


class StructureUpdate(_Body):
    name: str | None = Field(None, max_length=10_000)
    description: str | None = Field(None, max_length=100_000)
    fields: list[FieldIn] | None = Field(None, max_length=1_000)


class RecordCreate(_Body):
    record_slug: str = Field(alias="recordSlug", max_length=200)
    data: dict[str, Any]


class RecordUpdate(_Body):
    data: dict[str, Any]
