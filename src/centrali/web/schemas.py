"""Request bodies of the management API; wire names live here only, as aliases."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


def _unstorable(value: Any, where: str) -> str | None:
    """Where a NUL or an unpaired surrogate hides in ``value``: neither PostgreSQL text nor
    UTF-8 can hold them, so they are refused at the door rather than failing in the store."""
    if isinstance(value, str):
        if "\x00" in value:
            return where
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where
    elif isinstance(value, dict):
        for key, item in value.items():
            found = _unstorable(key, where) or _unstorable(item, f"{where}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _unstorable(item, f"{where}[{i}]")
            if found:
                return found
    return None


class _Body(BaseModel):
    # Unknown fields and wrong JSON types are refused rather than coerced or ignored.
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    @model_validator(mode="after")
    def _storable_text(self) -> Self:
        for name, field in type(self).model_fields.items():
            found = _unstorable(getattr(self, name), field.alias or name)
            if found:
                raise ValueError(f"{found}: text must not contain NUL or unpaired surrogates")
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
