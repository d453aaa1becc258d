"""Settings from the environment and `.env` (names as in DESIGN.md section 6).

Invalid combinations fail at start-up with a message that names the setting and
says why, instead of failing mid-call.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.books.pricing import PriceBook


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Server
    host: str = "127.0.0.1"
    port: int = Field(7860, ge=1, le=65535)
    # Server processes on this machine, sharing the port (the kernel spreads connections) and the database.
    workers: int = Field(1, ge=1, le=64)
    data_dir: Path = Path("data")
    database_url: str = ""
    # PostgreSQL connections per worker: pool + overflow, times the workers, must stay below max_connections.
    database_pool_size: int = Field(5, ge=1, le=100)
    database_max_overflow: int = Field(5, ge=0, le=100)
    public_base_url: str = ""
    metrics_token: str = ""  # a bearer token /metrics requires (ADMIN_TOKEN works too once PUBLIC_BASE_URL is set)
    allowed_hosts: str = ""  # more names (comma-separated) this server is reached by, besides localhost and PUBLIC_BASE_URL
    log_level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Access
    jwt_secret: str = ""
    admin_token: str = ""
    # Keys the hashes of forgotten memories; every worker needs the same one. Empty: derived from
    # JWT_SECRET when exposed, else a key kept in DATA_DIR (docs/memory.md).
    memory_hash_key: str = ""

    # Vendors: keys
    deepgram_api_key: str = ""
    cerebras_api_key: str = ""
    openai_api_key: str = ""
    elevenlabs_api_key: str = ""
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    stripe_secret_key: str = ""

    # Vendors: endpoints (proxies, regional or self-hosted endpoints, tests)
    deepgram_base_url: str = "wss://api.deepgram.com"
    cerebras_base_url: str = "https://api.cerebras.ai/v1"
    openai_base_url: str = "https://api.openai.com/v1"
    elevenlabs_base_url: str = "wss://api.elevenlabs.io"
    twilio_api_base_url: str = "https://api.twilio.com"
    stripe_api_base: str = "https://api.stripe.com"

    # Vendors: models
    deepgram_model: str = "nova-3-general"
    cerebras_model: str = "gpt-oss-120b"
    openai_model: str = "gpt-4.1-mini"
    elevenlabs_model: str = "eleven_flash_v2_5"
    llm_timeout_secs: float = Field(8.0, gt=0)

    # Local LLM: any OpenAI-compatible server (llama.cpp, Ollama), used when no vendor LLM key is set
    llm_base_url: str = ""
    llm_model: str = ""
    llm_api_key: str = ""
    # In-process LLM, an opt-in extra (docs/local-llm.md, `make install-llama`): used when no vendor LLM key
    # and no LLM_BASE_URL is set. The shipped model unless LOCAL_LLM_MODEL_PATH names another GGUF file.
    local_llm: Literal["", "llama-cpp"] = ""
    local_llm_model_path: Path | None = None
    local_llm_model_sha256: str = Field("", pattern=r"^([0-9a-fA-F]{64})?$")
    local_llm_threads: int = Field(0, ge=0, le=64)  # 0: one per core
    local_llm_context_tokens: int = Field(2048, ge=512, le=32768)
    # Most prompt tokens per request, in the model's own tokens: on a CPU, reading the prompt is the slow part.
    local_llm_prompt_tokens: int = Field(768, ge=256)
    # Post-call memory extraction by the local model too. Off by default: the shipped 135M model cannot write
    # the extraction's JSON, so the deterministic extractor of the offline script does it (docs/local-llm.md).
    local_llm_extracts: bool = False

    # Books and memory
    prices_file: Path | None = None
    prompt_token_budget: int = Field(4300, ge=200)
    # Most tokens of the call's conversation resent with each turn; older turns become a running summary.
    conversation_token_budget: int = Field(1500, ge=200)
    # The persona may record or correct facts during the call (an LLM tool; vendor LLMs only).
    memory_tool: bool = True
    memory_load_timeout_secs: float = Field(1.5, gt=0)
    cost_flush_interval_secs: float = Field(1.0, gt=0)
    # A live call's owner renews its lease every HEARTBEAT_SECS; a call whose lease is
    # STALE_CALL_SECS old belongs to a dead or stalled worker and may be taken over.
    media_token_ttl_secs: int = Field(300, ge=10, le=3600)  # how long a call's signed media URL can be opened
    heartbeat_secs: float = Field(10.0, gt=0)
    stale_call_secs: float = Field(60.0, gt=0)
    end_poll_secs: float = Field(1.0, gt=0, le=10)  # how often a worker looks for end requests and lost leases
    reconcile_interval_secs: float = Field(60.0, gt=0)
    extraction_timeout_secs: float = Field(20.0, gt=0)
    extraction_backoff_secs: float = Field(30.0, ge=0)  # before the second attempt; doubled after each failure

    @field_validator("prices_file", "local_llm_model_path", mode="before")
    @classmethod
    def _no_empty_path(cls, value: object) -> object:
        return None if value in ("", None) else value  # PRICES_FILE= (as in .env.example) means the default

    @field_validator("public_base_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        value = value.rstrip("/")
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("PUBLIC_BASE_URL must start with https:// (or http:// for local tests)")
        return value

    @field_validator("llm_base_url")
    @classmethod
    def _llm_url(cls, value: str) -> str:
        value = value.rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("LLM_BASE_URL must be an http(s) URL of an OpenAI-compatible API, e.g. .../v1")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> "Settings":
        if self.llm_base_url and not self.llm_model:
            raise ValueError("LLM_MODEL is required with LLM_BASE_URL: the model name your local server serves")
        if self.local_llm and self.llm_base_url:
            raise ValueError("set LOCAL_LLM (a model in this process) or LLM_BASE_URL (a model server), not both")
        if self.local_llm_model_path and not self.local_llm_model_sha256:
            raise ValueError("LOCAL_LLM_MODEL_SHA256 is required with LOCAL_LLM_MODEL_PATH: the model file is "
                             "checked against it before it is loaded (sha256sum prints it)")
        if self.local_llm_prompt_tokens + 300 > self.local_llm_context_tokens:
            raise ValueError(f"LOCAL_LLM_PROMPT_TOKENS ({self.local_llm_prompt_tokens}) plus a reply of 300 tokens "
                             f"must fit LOCAL_LLM_CONTEXT_TOKENS ({self.local_llm_context_tokens})")
        if bool(self.twilio_account_sid) != bool(self.twilio_auth_token):
            raise ValueError("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set together")
        if self.twilio_account_sid and not self.twilio_account_sid.startswith("AC"):
            raise ValueError("TWILIO_ACCOUNT_SID must start with 'AC'")
        if self.twilio_account_sid and not self.public_base_url:
            raise ValueError("PUBLIC_BASE_URL is required with Twilio: webhooks are signed against it")
        if self.public_base_url:
            # Exposed to the internet: no generated secrets, no weak ones.
            if len(self.jwt_secret) < 32:
                raise ValueError("JWT_SECRET must be at least 32 characters when PUBLIC_BASE_URL is set")
            if len(self.admin_token) < 24:
                raise ValueError("ADMIN_TOKEN must be at least 24 characters when PUBLIC_BASE_URL is set")
        if self.stale_call_secs < 3 * self.heartbeat_secs:
            raise ValueError(
                f"STALE_CALL_SECS ({self.stale_call_secs:g}) must be at least three times HEARTBEAT_SECS "
                f"({self.heartbeat_secs:g}): otherwise a healthy call whose heartbeat is a little late "
                "is taken for a dead worker's and finalised while it is still running")
        if self.stripe_secret_key and not self.stripe_secret_key.startswith(("sk_", "rk_")):
            raise ValueError("STRIPE_SECRET_KEY must be a Stripe secret key (sk_... or rk_...)")
        if not self.jwt_secret:
            self.jwt_secret = secrets.token_urlsafe(32)  # local only: tokens die with the process
        if not self.admin_token:
            self.admin_token = secrets.token_urlsafe(24)
        return self

    def share_generated_secrets(self) -> list[str]:
        """The secrets generated for a local server (no JWT_SECRET or ADMIN_TOKEN set), put in the
        environment the server's worker processes inherit, or a token one worker signed would fail at
        another; and the memory hash key made now, not raced by the workers. Returns the names shared."""
        self.memory_hash_key_bytes()
        generated = {name: value for name, value in (("JWT_SECRET", self.jwt_secret), ("ADMIN_TOKEN", self.admin_token))
                     if not os.environ.get(name)}
        os.environ.update(generated)
        return list(generated)

    def memory_hash_key_bytes(self) -> bytes:
        if self.memory_hash_key:
            return self.memory_hash_key.encode()
        if self.public_base_url:  # exposed: JWT_SECRET is required and the same on every worker
            return hmac.new(self.jwt_secret.encode(), b"callmeback memory hashes", hashlib.sha256).digest()
        path = self.data_dir / "memory-hash.key"  # local: generated once, so hashes outlive a restart
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip().encode()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'callmeback.db').resolve()}"

    @property
    def payments_enabled(self) -> bool:
        return bool(self.stripe_secret_key)

    @property
    def twilio_enabled(self) -> bool:
        return bool(self.twilio_account_sid)

    @cached_property
    def price_book(self) -> PriceBook:
        return PriceBook.load(self.prices_file)

    def llm_rate_requirements(self) -> list[tuple[str, str, str, str]]:
        """Every configured model must have a price: checked at start-up."""
        return [
            ("cerebras", "llm", self.cerebras_model, "input_token"),
            ("cerebras", "llm", self.cerebras_model, "output_token"),
            ("openai", "llm", self.openai_model, "input_token"),
            ("openai", "llm", self.openai_model, "output_token"),
            ("deepgram", "stt", self.deepgram_model, "second"),
            ("elevenlabs", "tts", self.elevenlabs_model, "character"),
        ]


def load_settings(**overrides: object) -> Settings:
    """Settings with the price book validated against the configured models."""
    settings = Settings(**overrides)  # type: ignore[arg-type]
    settings.price_book.require_models(settings.llm_rate_requirements())
    return settings
