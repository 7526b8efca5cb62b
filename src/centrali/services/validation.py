"""Shared input rules: slugs, emails, lengths, pages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from centrali.services.errors import InvalidBodyError, NotFoundError

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s.]{1,63}$")
GROUP_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_.-]{0,62}[a-z0-9])?$")
NAME_MAX = 200
DESCRIPTION_MAX = 2000
PAGE_LIMIT_DEFAULT = 20
PAGE_LIMIT_MAX = 100
# Levels of objects and arrays a free-form JSON value may nest, the value itself being the
# first. Parsing, validating, storing and serialising JSON all recurse (the standard
# library's json and pydantic's serialiser give up a few hundred levels down), so a value
# deeper than this is refused at the door: one that was stored would fail every read of it.
MAX_JSON_DEPTH = 32


def check_slug(slug: str, what: str = "slug") -> str:
    if not SLUG_RE.match(slug):
        raise InvalidBodyError(
            f"{what} must be 1-64 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit",
            field=what,
        )
    return slug


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > 320 or not EMAIL_RE.match(email):
        raise InvalidBodyError(f"malformed email address: {email!r}", field="email")
    return email


def check_name(name: str, field: str = "name") -> str:
    name = name.strip()
    if not name:
        raise InvalidBodyError(f"{field} must not be empty", field=field)
    if len(name) > NAME_MAX:
        raise InvalidBodyError(f"{field} must be at most {NAME_MAX} characters", field=field)
    return name


def check_description(description: str | None) -> str | None:
    if description is None:
        return None
    if len(description) > DESCRIPTION_MAX:
        raise InvalidBodyError(
            f"description must be at most {DESCRIPTION_MAX} characters", field="description"
        )
    return description


def json_too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``value`` nests objects (dicts) and arrays (lists) more than ``limit`` levels
    deep (``{}`` and ``[]`` are one level, a scalar none). Iterative: any depth is safe to
    ask about, and the walk stops at the first container past the limit."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def too_deep_message(field: str) -> str:
    return f"{field}: nested too deeply (at most {MAX_JSON_DEPTH} levels of objects and arrays)"


def check_json_depth(value: Any, field: str) -> None:
    """400 naming ``field`` when ``value`` nests deeper than MAX_JSON_DEPTH."""
    if json_too_deep(value):
        raise InvalidBodyError(too_deep_message(field), field=field)


@dataclass(frozen=True, slots=True)
class PageRequest:
    page: int = 1
    limit: int = PAGE_LIMIT_DEFAULT

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit

    def body(self, items: list[dict[str, Any]], total: int) -> dict[str, Any]:
        """The wire shape of every list: ``{"data", "page", "limit", "total"}``."""
        return {"data": items, "page": self.page, "limit": self.limit, "total": total}

    @classmethod
    def parse(cls, page: str | None, limit: str | None) -> PageRequest:
        """From query strings; 400 for a non-integer or out-of-range value."""
        return cls(
            page=parse_int(page, "page", 1, 1, 10_000_000),
            limit=parse_int(limit, "limit", PAGE_LIMIT_DEFAULT, 1, PAGE_LIMIT_MAX),
        )


def parse_int(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not low <= int(raw) <= high:
        raise InvalidBodyError(f"{name} must be an integer from {low} to {high}", field=name)
    return int(raw)


MAX_ID = 2**63 - 1


def parse_path_id(raw: str, not_found: str) -> int:
    """A path id: anything but a positive 64-bit integer is simply not found."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not 0 < int(raw) <= MAX_ID:
        raise NotFoundError(not_found)
    return int(raw)
