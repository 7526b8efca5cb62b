"""The login-ticket key: 32 random bytes, one per store, kept like the signing keys.

Login tickets (``oauth.authorize``) are made and read by this server only, so they are
HMAC'd with a secret key rather than signed with the access-token key. The key is made once
per store, by whichever server prepares the store first (insert if absent: servers racing
agree on the first), and every worker and instance of the store reads it at start, so a
ticket made by one is read by all. With ``CENTRALI_MASTER_KEY`` set when it is made it is
stored encrypted (AES-256-GCM, as the private keys; ``oauth.keywrap``).
"""

from __future__ import annotations

import base64
import binascii

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from centrali.oauth.authorize import TICKET_KEY_BYTES, new_ticket_key
from centrali.oauth.keywrap import (
    MasterKeyError,
    is_wrapped,
    unwrap_private_key,
    wrap_private_key,
)
from centrali.store.db import Database
from centrali.store.tables import ServerSetting

SETTING = "login_ticket_key"
_AAD = "login-ticket-key"  # the associated data of its encryption


def ensure_ticket_key(db: Database, master_key: bytes | None) -> None:
    """Store a new ticket key unless the store has one (idempotent, safe to race)."""
    encoded = base64.b64encode(new_ticket_key()).decode("ascii")
    if master_key is not None:
        encoded = wrap_private_key(encoded, master_key=master_key, kid=_AAD)
    with db.write() as session:
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        stmt = insert(ServerSetting).values(name=SETTING, value=encoded)
        session.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))


def encrypt_ticket_key(db: Database, master_key: bytes) -> bool:
    """Re-store a plaintext ticket key encrypted under the master key (``centrali keys
    encrypt``); whether there was one to encrypt."""
    with db.write() as session:
        row = session.get(ServerSetting, SETTING, with_for_update=True)
        if row is None or is_wrapped(row.value):
            return False
        row.value = wrap_private_key(row.value, master_key=master_key, kid=_AAD)
    return True


def load_ticket_key(db: Database, master_key: bytes | None) -> bytes:
    """The store's ticket key (made first if missing). Raises ``MasterKeyError`` when it is
    stored encrypted and the master key is missing or another."""
    with db.read() as session:
        row = session.get(ServerSetting, SETTING)
        stored = None if row is None else row.value
    if stored is None:
        ensure_ticket_key(db, master_key)
        return load_ticket_key(db, master_key)
    text = unwrap_private_key(stored, master_key=master_key, kid=_AAD)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != TICKET_KEY_BYTES:
        raise MasterKeyError(f"the stored {SETTING} is not {TICKET_KEY_BYTES} bytes of base64")
    return key
