"""Settings: one typed object, read from ``CENTRALI_*`` environment variables or CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the server and the admin CLI need to know, with its default."""

    model_config = SettingsConfigDict(env_prefix="CENTRALI_", extra="ignore", frozen=True)

    data_dir: Path = Field(Path(".centrali"), description="Where the embedded SQLite file lives")
    database_url: str = Field("", description="SQLAlchemy URL; default: SQLite under data_dir")
    host: str = Field("127.0.0.1", description="Address `serve` binds")
    port: int = Field(8000, ge=0, le=65535, description="Port `serve` binds")
    workers: int = Field(1, ge=1, le=64, description="Worker processes of `serve`")
    issuer: str = Field("", description="`iss` claim; default http://127.0.0.1:<port>")
    audience: str = Field("", description="`aud` claim; default: the issuer")
    token_ttl: int = Field(
        25200,
        ge=1,
        le=86400 * 30,
        description="Access-token lifetime (s); under 60 only to test expiry handling",
    )
    signing_alg: Literal["RS256", "ES256", "EdDSA"] = Field(
        "RS256", description="Access-token signature: RS256 (default), ES256 or EdDSA"
    )
    token_reuse_seconds: int = Field(
        0, ge=0, le=3600, description="Answer a repeat request with the token already issued"
    )
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="Largest request body accepted")
    log_level: str = Field("info", description="uvicorn/python log level")
    log_format: Literal["json", "text"] = Field(
        "json", description="Server log lines: one JSON object each (default) or plain text"
    )
    access_log: bool = Field(True, description="One log line per request answered")
    # --- abuse limits on the token endpoint (0 turns a limit off) ---
    token_failures_per_ip: int = Field(
        100, ge=0, description="Failed token requests per source address per minute"
    )
    token_failures_per_client_ip: int = Field(
        20, ge=0, description="Failed token requests per source address and client_id per minute"
    )
    token_issuance_per_client: int = Field(
        0, ge=0, description="Tokens issued per client_id per minute (0: no limit)"
    )
    redis_url: str = Field(
        "",
        description="Share the abuse limits and used assertion ids between instances via Redis",
    )
    federation_allow_http: bool = Field(
        False,
        description="Allow http:// issuers for federated credentials (development and tests)",
    )
    # --- keys ---
    master_key: SecretStr = Field(
        SecretStr(""), description="Base64 of 32 bytes: encrypts private keys at rest (AES-GCM)"
    )
    key_lead_time: int = Field(
        900, ge=0, le=86400 * 7, description="Seconds a rotated-in key is published before it signs"
    )
    key_refresh_seconds: float = Field(
        10.0, gt=0, le=3600, description="How often a worker rereads the keys from the store"
    )
    # --- HTTP hygiene ---
    cors_origins: str = Field(
        "", description="Comma-separated origins allowed by CORS (empty: CORS off)"
    )
    ssl_certfile: str = Field("", description="TLS certificate (PEM) for `serve`")
    ssl_keyfile: str = Field("", description="TLS private key (PEM) for `serve`")
    forwarded_allow_ips: str = Field(
        "",
        description="Proxies (comma-separated IPs/CIDRs) whose X-Forwarded-For/-Proto are trusted",
    )
    proxy_check: bool = Field(
        True,
        description=(
            "Refuse to serve an https:// issuer without TLS or forwarded_allow_ips "
            "(every client would share the proxy's address); false: serve anyway"
        ),
    )
    keep_alive_timeout: int = Field(5, ge=1, le=300, description="Idle keep-alive (s)")
    body_timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds a client may take to send a request body"
    )
    # --- human sign-in (OpenID Connect provider; 0 turns a login limit off) ---
    login_failures_per_ip: int = Field(
        20, ge=0, description="Failed sign-ins per source address per minute"
    )
    login_failures_per_account: int = Field(
        10, ge=0, description="Failed sign-ins per email address per minute"
    )
    authorize_per_ip: int = Field(
        120, ge=0, description="Authorization requests per source address per minute"
    )
    login_failures_global: int = Field(
        300, ge=0, description="Failed sign-ins per minute, all addresses and accounts together"
    )
    password_checks: int = Field(
        4,
        ge=1,
        le=64,
        description="Password checks (argon2id) at once per worker; a few more wait, others 503",
    )
    user_token_ttl: int = Field(
        900, ge=60, le=86400, description="Lifetime (s) of access tokens issued to signed-in users"
    )
    refresh_token_ttl: int = Field(
        28800, ge=60, le=86400 * 90, description="Lifetime (s) of a refresh-token chain"
    )
    session_ttl: int = Field(
        28800, ge=60, le=86400 * 90, description="Lifetime (s) of a sign-in at the provider"
    )

    # True when the issuer was configured rather than derived from the port.
    _issuer_configured: bool = PrivateAttr(False)

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        self._issuer_configured = bool(self.issuer)
        # Derived values are set in one place; the model is frozen, hence object.__setattr__.
        if not self.database_url:
            path = (self.data_dir / "centrali.db").resolve()
            object.__setattr__(self, "database_url", f"sqlite:///{path}")
        if not self.issuer:
            scheme = "https" if self.ssl_certfile else "http"
            object.__setattr__(self, "issuer", f"{scheme}://127.0.0.1:{self.port}")
        object.__setattr__(self, "issuer", self.issuer.rstrip("/"))
        if not self.audience:
            object.__setattr__(self, "audience", self.issuer)
        return self

    @property
    def issuer_configured(self) -> bool:
        return self._issuer_configured

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]
