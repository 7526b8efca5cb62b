"""Structures (typed record types) and records of a workspace.

A record's ``data`` is checked against its structure's fields: no unknown field, every
required field present and not null, each value of its field's type.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from centrali.services.context import Actor, isoformat
from centrali.services.errors import ConflictError, InvalidBodyError, NotFoundError
from centrali.services.validation import (
    SLUG_RE,
    PageRequest,
    check_description,
    check_json_depth,
    check_name,
    check_slug,
    parse_path_id,
)
from centrali.services.workspaces import require_workspace
from centrali.store import repositories as repo
from centrali.store.db import Database
from centrali.store.tables import Record, Structure

FIELD_TYPES = ("string", "number", "integer", "boolean", "datetime", "json")
FIELD_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_FIELDS = 100


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    type: str
    required: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "required": self.required}


def parse_fields(raw: Sequence[Mapping[str, Any]]) -> list[FieldSpec]:
    """Validate a structure's field list."""
    if len(raw) > MAX_FIELDS:
        raise InvalidBodyError(f"fields: at most {MAX_FIELDS}", field="fields")
    specs: list[FieldSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"fields[{i}]"
        name, ftype = item.get("name"), item.get("type")
        required = item.get("required", False)
        if set(item) - {"name", "type", "required"}:
            raise InvalidBodyError(f"{where}: unknown key", field=where)
        if not isinstance(name, str) or not FIELD_NAME_RE.match(name):
            raise InvalidBodyError(
                f"{where}.name: letters, digits and '_', at most 64, not starting with a digit",
                field=f"{where}.name",
            )
        if name in seen:
            raise InvalidBodyError(f"{where}.name: duplicate field {name!r}", field=f"{where}.name")
        if ftype not in FIELD_TYPES:
            raise InvalidBodyError(
                f"{where}.type: one of {', '.join(FIELD_TYPES)}", field=f"{where}.type"
            )
        if not isinstance(required, bool):
            raise InvalidBodyError(
                f"{where}.required: must be a boolean", field=f"{where}.required"
            )
        seen.add(name)
        specs.append(FieldSpec(name, ftype, required))
    return specs


def _type_ok(ftype: str, value: Any) -> bool:
    if ftype == "string":
        return isinstance(value, str)
    if ftype == "number":
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    if ftype == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if ftype == "boolean":
        return isinstance(value, bool)
    if ftype == "datetime":
        if not isinstance(value, str) or len(value) > 64:
            return False
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return False
        return True
    return True  # json: any JSON value


def check_record_data(fields: Sequence[FieldSpec], data: Mapping[str, Any]) -> dict[str, Any]:
    """The data if it fits the fields; else 400 naming the first offending field. Data nested
    deeper than MAX_JSON_DEPTH (``data`` itself the first level) is never stored, whichever
    way it came: every later read of it would fail to serialise."""
    check_json_depth(data, "data")
    by_name = {f.name: f for f in fields}
    for key in data:
        if key not in by_name:
            raise InvalidBodyError(f"data.{key[:64]}: unknown field", field=f"data.{key[:64]}")
    for spec in fields:
        value = data.get(spec.name)
        where = f"data.{spec.name}"
        if value is None:
            if spec.required:
                raise InvalidBodyError(f"{where}: required", field=where)
            continue
        if not _type_ok(spec.type, value):
            raise InvalidBodyError(f"{where}: must be of type {spec.type}", field=where)
    return dict(data)


def _specs(structure: Structure) -> list[FieldSpec]:
    return [
        FieldSpec(f["name"], f["type"], bool(f.get("required", False))) for f in structure.fields
    ]


@dataclass(frozen=True, slots=True)
class StructureView:
    id: int
    slug: str
    name: str
    description: str | None
    fields: tuple[FieldSpec, ...]
    created_at: str
    created_by: str
    updated_at: str

    @classmethod
    def of(cls, row: Structure) -> StructureView:
        return cls(
            id=row.id,
            slug=row.slug,
            name=row.name,
            description=row.description,
            fields=tuple(_specs(row)),
            created_at=isoformat(row.created_at),
            created_by=row.created_by,
            updated_at=isoformat(row.updated_at),
        )


@dataclass(frozen=True, slots=True)
class RecordView:
    id: int
    record_slug: str
    data: dict[str, Any]
    created_at: str
    created_by: str
    updated_at: str

    @classmethod
    def of(cls, row: Record, slug: str) -> RecordView:
        return cls(
            id=row.id,
            record_slug=slug,
            data=dict(row.data),
            created_at=isoformat(row.created_at),
            created_by=row.created_by,
            updated_at=isoformat(row.updated_at),
        )


def _require_structure(
    session: Session, workspace_id: int, slug: str, *, for_update: bool = False
) -> Structure:
    if not SLUG_RE.match(slug):  # not a slug we could have stored; keeps odd text from SQL
        raise NotFoundError("Structure not found")
    row = repo.get_structure(session, workspace_id=workspace_id, slug=slug, for_update=for_update)
    if row is None:
        raise NotFoundError("Structure not found")
    return row


# --- structures ---------------------------------------------------------------------------


def create_structure(
    db: Database,
    *,
    workspace_slug: str,
    actor: Actor,
    slug: str,
    name: str,
    description: str | None,
    fields: Sequence[Mapping[str, Any]],
) -> StructureView:
    check_slug(slug)
    name = check_name(name)
    description = check_description(description)
    specs = parse_fields(fields)
    try:
        with db.write() as session:
            workspace = require_workspace(session, workspace_slug)
            if repo.get_structure(session, workspace_id=workspace.id, slug=slug) is not None:
                raise ConflictError(f"Structure {slug!r} already exists")
            row = Structure(
                workspace_id=workspace.id,
                slug=slug,
                name=name,
                description=description,
                fields=[s.as_dict() for s in specs],
                created_at=actor.at,
                created_by=actor.subject,
                updated_at=actor.at,
            )
            session.add(row)
            session.flush()
            return StructureView.of(row)
    except IntegrityError as exc:
        raise ConflictError(f"Structure {slug!r} already exists") from exc


def list_structures(
    db: Database, *, workspace_slug: str, page: PageRequest
) -> tuple[list[StructureView], int]:
    with db.read() as session:
        workspace = require_workspace(session, workspace_slug)
        rows, total = repo.list_structures(
            session, workspace_id=workspace.id, offset=page.offset, limit=page.limit
        )
        return [StructureView.of(r) for r in rows], total


def get_structure(db: Database, *, workspace_slug: str, slug: str) -> StructureView:
    with db.read() as session:
        workspace = require_workspace(session, workspace_slug)
        return StructureView.of(_require_structure(session, workspace.id, slug))


_UNSET: Any = object()


def update_structure(
    db: Database,
    *,
    workspace_slug: str,
    actor: Actor,
    slug: str,
    name: str | None = None,
    description: str | None = _UNSET,
    fields: Sequence[Mapping[str, Any]] | None = None,
) -> StructureView:
    """Change what is given; records already stored are checked again only when written."""
    checked_name = check_name(name) if name is not None else None
    checked_description = check_description(description) if description is not _UNSET else _UNSET
    specs = parse_fields(fields) if fields is not None else None
    with db.write() as session:
        workspace = require_workspace(session, workspace_slug)
        row = _require_structure(session, workspace.id, slug, for_update=True)
        if checked_name is not None:
            row.name = checked_name
        if checked_description is not _UNSET:
            row.description = checked_description
        if specs is not None:
            row.fields = [s.as_dict() for s in specs]
        row.updated_at = actor.at
        session.flush()
        return StructureView.of(row)


def delete_structure(db: Database, *, workspace_slug: str, slug: str, force: bool) -> None:
    """Delete a structure; 409 while it has records, unless ``force`` (records go too)."""
    with db.write() as session:
        workspace = require_workspace(session, workspace_slug)
        row = _require_structure(session, workspace.id, slug, for_update=True)
        if repo.count_records(session, structure_id=row.id):
            if not force:
                raise ConflictError(
                    f"Structure {slug!r} still has records; delete them or use ?force=true"
                )
            repo.delete_records(session, structure_id=row.id)
        session.delete(row)


# --- records --------------------------------------------------------------------------------


def parse_record_id(raw: str) -> int:
    return parse_path_id(raw, "Record not found")


def create_record(
    db: Database, *, workspace_slug: str, actor: Actor, record_slug: str, data: Mapping[str, Any]
) -> RecordView:
    with db.write() as session:
        workspace = require_workspace(session, workspace_slug)
        structure = _require_structure(session, workspace.id, record_slug)
        checked = check_record_data(_specs(structure), data)
        row = Record(
            workspace_id=workspace.id,
            structure_id=structure.id,
            data=checked,
            created_at=actor.at,
            created_by=actor.subject,
            updated_at=actor.at,
        )
        session.add(row)
        session.flush()
        return RecordView.of(row, structure.slug)


def list_records(
    db: Database, *, workspace_slug: str, record_slug: str | None, page: PageRequest
) -> tuple[list[RecordView], int]:
    with db.read() as session:
        workspace = require_workspace(session, workspace_slug)
        structure_id = None
        if record_slug is not None:
            structure_id = _require_structure(session, workspace.id, record_slug).id
        rows, total = repo.list_records(
            session,
            workspace_id=workspace.id,
            structure_id=structure_id,
            offset=page.offset,
            limit=page.limit,
        )
        return [RecordView.of(r, s) for r, s in rows], total


def _require_record(
    session: Session, workspace_id: int, record_id: int, *, for_update: bool = False
) -> tuple[Record, str]:
    found = repo.get_record(
        session, workspace_id=workspace_id, record_id=record_id, for_update=for_update
    )
    if found is None:
        raise NotFoundError("Record not found")
    return found


def record_view(row: Sequence[Any] | None) -> RecordView:
    """The view of a row of repositories.read_records; NotFoundError for None."""
    if row is None:
        raise NotFoundError("Record not found")
    record_id, slug, data, created_at, created_by, updated_at = row
    return RecordView(
        id=record_id,
        record_slug=slug,
        data=dict(data),
        created_at=isoformat(created_at),
        created_by=created_by,
        updated_at=isoformat(updated_at),
    )


def update_record(
    db: Database, *, workspace_slug: str, actor: Actor, record_id: int, data: Mapping[str, Any]
) -> RecordView:
    """Replace a record's data (checked against its structure's current fields)."""
    with db.write() as session:
        workspace = require_workspace(session, workspace_slug)
        row, slug = _require_record(session, workspace.id, record_id, for_update=True)
        structure = _require_structure(session, workspace.id, slug)
        row.data = check_record_data(_specs(structure), data)
        row.updated_at = actor.at
        session.flush()
        return RecordView.of(row, slug)


def delete_record(db: Database, *, workspace_slug: str, record_id: int) -> None:
    with db.write() as session:
        workspace = require_workspace(session, workspace_slug)
        row, _slug = _require_record(session, workspace.id, record_id, for_update=True)
        session.delete(row)
