"""Request bodies of the management API; wire names live here only, as aliases."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    # Unknown fields and wrong JSON types are refused rather than coerced or ignored.
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class ServiceAccountCreate(_Body):
    name: str = Field(max_length=10_000)
    description: str | None = Field(None, max_length=100_000)
    grant_types: list[str] | None = Field(None, max_length=16)
    scope: str | None = Field(None, max_length=1_000)
    groups: list[str] | None = Field(None, max_length=1_000)


class NameUpdate(_Body):
    name: str = Field(max_length=10_000)


class DescriptionUpdate(_Body):
    description: str | None = Field(max_length=100_000)


class GroupsUpdate(_Body):
    groups: list[str] = Field(max_length=1_000)


class RotateRequest(_Body):
    revoke_tokens: bool = Field(False, alias="revokeTokens")


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
