"""Configuration: read and validated once per process (README.md, "Configuration").

A bad value raises :class:`ConfigError` naming the setting, so the app stops at
start-up instead of failing on the first request.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from shared.header_checks import is_guid, is_loopback_host

AuthMode = Literal["managed-identity", "key"]
ClientIpKind = Literal["app-service", "front-door", "xff"]

DEFAULT_API_VERSION = "v1"
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_TOKENS = 4096
DEFAULT_MAX_N = 1
DEFAULT_UPSTREAM_TIMEOUT_S = 120.0
DEFAULT_UPSTREAM_CONNECTIONS = 256
DEFAULT_BUSY_TIMEOUT_S = 5.0
# A user's requests in flight on one instance: an SPA or an agent runs a few at once; 16 users at it fill the
# default pool of upstream connections, one user alone cannot.
DEFAULT_USER_MAX_IN_FLIGHT = 16
DEFAULT_CALLER_WRITE_TIMEOUT_S = 30.0
DEFAULT_STREAM_KEEPALIVE_S = 15.0
# Priority processing costs more than the default tier; flex costs less.
DEFAULT_SERVICE_TIERS = ("auto", "default", "flex")
DEFAULT_BLOCKLIST_TABLE = "relayblocklist"
DEFAULT_BUDGET_TABLE = "relaybudget"
DEFAULT_RESPONSES_TABLE = "relayresponses"
DEFAULT_BLOCKLIST_REFRESH_S = 30.0
DEFAULT_BUDGET_FLUSH_S = 5.0

# A Foundry project endpoint: https://<resource>.services.ai.azure.com/api/projects/<project>
# (learn.microsoft.com/azure/foundry/how-to/develop/sdk-overview).
_PROJECT_PATH = re.compile(r"^/api/projects/[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# The Responses API's server-side tools: each reaches out (web, MCP servers), runs code or costs more than
# tokens, so the relay refuses them unless RELAY_RESPONSES_ALLOWED_TOOLS names them.
SERVER_SIDE_TOOLS = frozenset(
    {"web_search", "web_search_preview", "file_search", "code_interpreter", "mcp", "computer_use_preview", "image_generation"}
)
# HMAC-SHA256 keys of at least this many bytes (RFC 2104: at least the hash's output length).
MIN_SEAL_KEY_BYTES = 32
_DATED_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_DEPLOYMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Azure Table storage table names: https://learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_MAX_TOKEN_BUDGET = 10**12
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no", ""}


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it."""


@dataclass(frozen=True)
class AuthPolicy:
    """Who may call this instance (docs/design.md, "Identity"). ``None`` means "any"."""

    allowed_tenants: frozenset[str] | None = None
    required_roles: frozenset[str] = frozenset()
    allowed_audiences: frozenset[str] | None = None
    allow_app_tokens: bool = False

    def __post_init__(self) -> None:
        # Tenant IDs are GUIDs, compared lower-case: normalised once here, not on every request.
        if self.allowed_tenants is not None:
            object.__setattr__(self, "allowed_tenants", frozenset(tenant.lower() for tenant in self.allowed_tenants))


@dataclass(frozen=True)
class ClientIpPolicy:
    """How the caller's IP is found (docs/design.md, "Client IP")."""

    kind: ClientIpKind = "app-service"
    hops: int = 1
    front_door_id: str | None = None


@dataclass(frozen=True)
class BlocklistSettings:
    """The block list (docs/blocklist.md)."""

    enabled: bool = False
    table: str = DEFAULT_BLOCKLIST_TABLE
    refresh_s: float = DEFAULT_BLOCKLIST_REFRESH_S
    # What an instance does when its first read of the table fails (SECURITY.md): refuse (503) or serve.
    fail_open: bool = False


@dataclass(frozen=True)
class BudgetSettings:
    """Token budgets (docs/design.md, "Block list and token budgets"); a limit of 0 means none."""

    user_tokens_per_minute: int = 0
    user_tokens_per_day: int = 0
    tenant_tokens_per_day: int = 0
    table: str = DEFAULT_BUDGET_TABLE
    flush_s: float = DEFAULT_BUDGET_FLUSH_S

    @property
    def enabled(self) -> bool:
        return bool(self.user_tokens_per_minute or self.user_tokens_per_day or self.tenant_tokens_per_day)


@dataclass(frozen=True)
class ControlSettings:
    """The block list and the token budgets, and the table service that holds their shared state."""

    table_endpoint: str | None = None
    blocklist: BlocklistSettings = BlocklistSettings()
    budget: BudgetSettings = BudgetSettings()

    @property
    def use_tables(self) -> bool:
        """A control that keeps its state in the table service is on."""
        return self.blocklist.enabled or self.budget.enabled


@dataclass(frozen=True)
class ResponsesSettings:
    """The Responses API, served when a Foundry project endpoint is configured (README.md, "The Responses API")."""

    project_endpoint: str | None = None
    # The key that seals the ids the relay hands out to their owner (RELAY_RESPONSES_SEAL_KEY, the local
    # host's and the tests'); empty: the one the relay keeps in ``table`` (shared/responses_key.py).
    seal_key: bytes = b""
    table: str = DEFAULT_RESPONSES_TABLE
    # Whether responses are stored in the project (the service's default) when the caller does not say.
    store: bool = True
    allowed_tools: frozenset[str] = frozenset()

    @property
    def enabled(self) -> bool:
        return self.project_endpoint is not None


@dataclass(frozen=True)
class Settings:
    endpoint: str
    deployments: tuple[str, ...]
    application_name: str
    api_version: str = DEFAULT_API_VERSION
    auth_mode: AuthMode = "managed-identity"
    client_id: str | None = None
    # Set by App Service (and Functions) when the app has a managed identity; locally, by the identity emulator.
    identity_endpoint: str | None = None
    keyvault_url: str | None = None
    key_secret_name: str | None = None
    auth_policy: AuthPolicy = AuthPolicy()
    client_ip: ClientIpPolicy = ClientIpPolicy()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_tokens: int = DEFAULT_MAX_TOKENS
    max_n: int = DEFAULT_MAX_N
    upstream_timeout_s: float = DEFAULT_UPSTREAM_TIMEOUT_S
    # Connections to Azure OpenAI; a request that finds none free within busy_timeout_s gets a 503.
    upstream_connections: int = DEFAULT_UPSTREAM_CONNECTIONS
    busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S
    # Chat requests of one user (object ID) in flight on this instance; more is a 429 user_concurrency_exceeded.
    user_max_in_flight: int = DEFAULT_USER_MAX_IN_FLIGHT
    # A stream whose caller reads nothing for this long is ended, and its upstream request with it.
    caller_write_timeout_s: float = DEFAULT_CALLER_WRITE_TIMEOUT_S
    # A stream sends an SSE comment after this long without a byte from Azure, so that idle timeouts
    # between the caller and the relay do not cut a reasoning model's long think.
    stream_keepalive_s: float = DEFAULT_STREAM_KEEPALIVE_S
    allow_store: bool = False
    allowed_service_tiers: frozenset[str] = frozenset(DEFAULT_SERVICE_TIERS)
    expose_cached_tokens: bool = False
    easy_auth_enabled: bool = False
    controls: ControlSettings = ControlSettings()
    responses: ResponsesSettings = ResponsesSettings()

    @property
    def default_deployment(self) -> str:
        return self.deployments[0]


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from app settings / environment variables."""
    endpoint = _url(env, "AZURE_OPENAI_ENDPOINT", required=True)
    assert endpoint is not None
    _check_base_url(endpoint, "AZURE_OPENAI_ENDPOINT")
    api_version = env.get("AZURE_OPENAI_API_VERSION", "").strip() or DEFAULT_API_VERSION
    if api_version != "v1" and not _DATED_API_VERSION.match(api_version):
        raise ConfigError(f"AZURE_OPENAI_API_VERSION must be 'v1' or a dated version such as '2025-01-01-preview', got {api_version!r}")
    deployments = _list(env, "AZURE_OPENAI_DEPLOYMENTS")
    if not deployments:
        raise ConfigError("AZURE_OPENAI_DEPLOYMENTS is required (comma-separated deployment names)")
    for name in deployments:
        if not _DEPLOYMENT.match(name):
            raise ConfigError(f"AZURE_OPENAI_DEPLOYMENTS has an invalid deployment name {name!r}")

    auth_mode = env.get("AZURE_OPENAI_AUTH", "").strip() or "managed-identity"
    if auth_mode not in ("managed-identity", "key"):
        raise ConfigError(f"AZURE_OPENAI_AUTH must be 'managed-identity' or 'key', got {auth_mode!r}")
    if auth_mode == "key":
        missing = [name for name in ("AZURE_KEYVAULT_URL", "AZURE_OPENAI_KEY_SECRET_NAME") if not env.get(name, "").strip()]
        if missing:
            raise ConfigError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required when AZURE_OPENAI_AUTH=key")
    keyvault_url = _url(env, "AZURE_KEYVAULT_URL", required=False)
    key_secret_name = env.get("AZURE_OPENAI_KEY_SECRET_NAME", "").strip() or None

    client_id = env.get("AZURE_CLIENT_ID", "").strip() or None
    if client_id is not None and not is_guid(client_id):
        raise ConfigError("AZURE_CLIENT_ID must be a GUID (the user-assigned identity's client ID)")

    application_name = env.get("APPLICATION_NAME", "").strip()
    if not application_name:
        raise ConfigError("APPLICATION_NAME is required (sent to Defender for Cloud as application_name)")
    if len(application_name) > 128 or not application_name.isprintable():
        raise ConfigError("APPLICATION_NAME must be at most 128 printable characters")

    tenants = _list(env, "RELAY_ALLOWED_TENANTS")
    for tenant in tenants:
        if not is_guid(tenant):
            raise ConfigError(f"RELAY_ALLOWED_TENANTS must list tenant GUIDs, got {tenant!r}")
    audiences = _list(env, "RELAY_ALLOWED_AUDIENCES")
    policy = AuthPolicy(
        allowed_tenants=frozenset(tenants) or None,
        required_roles=frozenset(_list(env, "RELAY_REQUIRED_ROLES")),
        allowed_audiences=frozenset(audiences) or None,
        allow_app_tokens=_bool(env, "RELAY_ALLOW_APP_TOKENS", False),
    )

    return Settings(
        endpoint=endpoint,
        deployments=deployments,
        application_name=application_name,
        api_version=api_version,
        auth_mode=auth_mode,  # type: ignore[arg-type]
        client_id=client_id,
        identity_endpoint=env.get("IDENTITY_ENDPOINT", "").strip() or None,
        keyvault_url=keyvault_url,
        key_secret_name=key_secret_name,
        auth_policy=policy,
        client_ip=_client_ip_policy(env),
        max_body_bytes=_int(env, "RELAY_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, 1024, 100 * 1024 * 1024),
        max_tokens=_int(env, "RELAY_MAX_TOKENS", DEFAULT_MAX_TOKENS, 1, 1_000_000),
        max_n=_int(env, "RELAY_MAX_N", DEFAULT_MAX_N, 1, 128),
        upstream_timeout_s=_float(env, "RELAY_UPSTREAM_TIMEOUT_S", DEFAULT_UPSTREAM_TIMEOUT_S, 0.1, 600.0),
        upstream_connections=_int(env, "RELAY_UPSTREAM_CONNECTIONS", DEFAULT_UPSTREAM_CONNECTIONS, 1, 100_000),
        busy_timeout_s=_float(env, "RELAY_BUSY_TIMEOUT_S", DEFAULT_BUSY_TIMEOUT_S, 0.0, 600.0),
        user_max_in_flight=_int(env, "RELAY_USER_MAX_IN_FLIGHT", DEFAULT_USER_MAX_IN_FLIGHT, 1, 100_000),
        caller_write_timeout_s=_float(env, "RELAY_CALLER_WRITE_TIMEOUT_S", DEFAULT_CALLER_WRITE_TIMEOUT_S, 0.1, 3600.0),
        stream_keepalive_s=_float(env, "RELAY_STREAM_KEEPALIVE_S", DEFAULT_STREAM_KEEPALIVE_S, 0.1, 120.0),
        allow_store=_bool(env, "RELAY_ALLOW_STORE", False),
        allowed_service_tiers=frozenset(_list(env, "RELAY_ALLOWED_SERVICE_TIERS") or DEFAULT_SERVICE_TIERS),
        expose_cached_tokens=_bool(env, "RELAY_EXPOSE_CACHED_TOKENS", False),
        easy_auth_enabled=_bool(env, "WEBSITE_AUTH_ENABLED", False),
        controls=load_control_settings(env),
        responses=load_responses_settings(env),
    )


def load_responses_settings(env: Mapping[str, str]) -> ResponsesSettings:
    """The Responses API's settings: off without AZURE_AI_PROJECT_ENDPOINT.

    With it, the seal key is RELAY_RESPONSES_SEAL_KEY when set (the local host sets one per run), else the
    one the relay keeps in RELAY_RESPONSES_TABLE, which then needs RELAY_TABLE_ENDPOINT. The other settings
    are read and checked with the API off too: a bad value stops the app the day it is set.
    """
    endpoint = _url(env, "AZURE_AI_PROJECT_ENDPOINT", required=False)
    store = _bool(env, "RELAY_RESPONSES_STORE", True)
    tools = frozenset(_list(env, "RELAY_RESPONSES_ALLOWED_TOOLS"))
    unknown = sorted(tools - SERVER_SIDE_TOOLS)
    if unknown:
        raise ConfigError(
            f"RELAY_RESPONSES_ALLOWED_TOOLS must list server-side tools ({', '.join(sorted(SERVER_SIDE_TOOLS))}), got {unknown[0]!r}"
        )
    table = _table_name(env, "RELAY_RESPONSES_TABLE", DEFAULT_RESPONSES_TABLE)
    if endpoint is None:
        return ResponsesSettings(store=store, allowed_tools=tools, table=table)
    if not _PROJECT_PATH.fullmatch(urlsplit(endpoint).path):
        raise ConfigError(
            "AZURE_AI_PROJECT_ENDPOINT must be a Foundry project endpoint, "
            f"https://<resource>.services.ai.azure.com/api/projects/<project>, got {endpoint!r}"
        )
    raw_key = env.get("RELAY_RESPONSES_SEAL_KEY", "").strip()
    if not raw_key:
        if _url(env, "RELAY_TABLE_ENDPOINT", required=False) is None:
            raise ConfigError(
                "AZURE_AI_PROJECT_ENDPOINT needs RELAY_TABLE_ENDPOINT (the relay keeps the key that binds Responses ids "
                "to their caller in RELAY_RESPONSES_TABLE) or RELAY_RESPONSES_SEAL_KEY"
            )
        return ResponsesSettings(project_endpoint=endpoint, store=store, allowed_tools=tools, table=table)
    try:
        key = base64.b64decode(raw_key, validate=True)
    except ValueError:
        key = b""
    if len(key) < MIN_SEAL_KEY_BYTES:
        raise ConfigError(
            f"RELAY_RESPONSES_SEAL_KEY must be at least {MIN_SEAL_KEY_BYTES} random bytes in base64 (openssl rand -base64 32)"
        )
    return ResponsesSettings(project_endpoint=endpoint, seal_key=key, store=store, allowed_tools=tools, table=table)


def _client_ip_policy(env: Mapping[str, str]) -> ClientIpPolicy:
    mode = env.get("RELAY_CLIENT_IP_MODE", "").strip().lower() or "app-service"
    front_door_id = env.get("RELAY_FRONT_DOOR_ID", "").strip() or None
    if mode == "app-service":
        return ClientIpPolicy("app-service")
    if mode == "front-door":
        if front_door_id is None or not is_guid(front_door_id):
            raise ConfigError("RELAY_FRONT_DOOR_ID must be the Front Door profile's ID (a GUID) when RELAY_CLIENT_IP_MODE=front-door")
        return ClientIpPolicy("front-door", front_door_id=front_door_id.lower())
    if mode.startswith("xff:") and mode[4:].isdigit() and 1 <= int(mode[4:]) <= 32:
        return ClientIpPolicy("xff", hops=int(mode[4:]))
    raise ConfigError(f"RELAY_CLIENT_IP_MODE must be 'app-service', 'front-door' or 'xff:N' (1-32), got {mode!r}")


def load_control_settings(env: Mapping[str, str]) -> ControlSettings:
    """The block list and budget settings as the relay runs them: RELAY_TABLE_ENDPOINT is required when either is on."""
    controls = read_control_settings(env)
    if controls.table_endpoint is None and controls.use_tables:
        raise ConfigError(
            "RELAY_TABLE_ENDPOINT is required when RELAY_BLOCKLIST_ENABLED is true or a RELAY_BUDGET_* limit is set "
            "(the table service URL, e.g. https://<account>.table.core.windows.net)"
        )
    return controls


def read_control_settings(env: Mapping[str, str]) -> ControlSettings:
    """The block list and budget settings, checked as the relay checks them, with RELAY_TABLE_ENDPOINT optional.

    For the tools around the relay: the local host reads them to know whether to start Azurite for
    the tables, the block list command to know which table and table service to use.
    """
    cold_start = env.get("RELAY_BLOCKLIST_COLD_START", "").strip().lower() or "fail-closed"
    if cold_start not in ("fail-closed", "fail-open"):
        raise ConfigError(f"RELAY_BLOCKLIST_COLD_START must be 'fail-closed' or 'fail-open', got {cold_start!r}")
    blocklist = BlocklistSettings(
        enabled=_bool(env, "RELAY_BLOCKLIST_ENABLED", False),
        table=_table_name(env, "RELAY_BLOCKLIST_TABLE", DEFAULT_BLOCKLIST_TABLE),
        refresh_s=_float(env, "RELAY_BLOCKLIST_REFRESH_S", DEFAULT_BLOCKLIST_REFRESH_S, 0.5, 3600.0),
        fail_open=cold_start == "fail-open",
    )
    budget = BudgetSettings(
        user_tokens_per_minute=_int(env, "RELAY_BUDGET_USER_TOKENS_PER_MINUTE", 0, 0, _MAX_TOKEN_BUDGET),
        user_tokens_per_day=_int(env, "RELAY_BUDGET_USER_TOKENS_PER_DAY", 0, 0, _MAX_TOKEN_BUDGET),
        tenant_tokens_per_day=_int(env, "RELAY_BUDGET_TENANT_TOKENS_PER_DAY", 0, 0, _MAX_TOKEN_BUDGET),
        table=_table_name(env, "RELAY_BUDGET_TABLE", DEFAULT_BUDGET_TABLE),
        flush_s=_float(env, "RELAY_BUDGET_FLUSH_S", DEFAULT_BUDGET_FLUSH_S, 0.2, 60.0),
    )
    if blocklist.table.lower() == budget.table.lower():
        raise ConfigError("RELAY_BLOCKLIST_TABLE and RELAY_BUDGET_TABLE must name different tables")
    return ControlSettings(table_endpoint=_url(env, "RELAY_TABLE_ENDPOINT", required=False), blocklist=blocklist, budget=budget)


def check_table_name(value: str, setting: str) -> str:
    """``value`` if it is a valid table name, else a ConfigError naming ``setting`` (an app setting or an option)."""
    if not _TABLE_NAME.fullmatch(value):
        raise ConfigError(f"{setting} must be a table name (a letter, then 2-62 letters or digits), got {value!r}")
    return value


def _table_name(env: Mapping[str, str], name: str, default: str) -> str:
    return check_table_name(env.get(name, "").strip() or default, name)


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def _url(env: Mapping[str, str], name: str, *, required: bool) -> str | None:
    value = env.get(name, "").strip().rstrip("/")
    if not value:
        if required:
            raise ConfigError(f"{name} is required")
        return None
    parts = urlsplit(value)
    secure = parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname))
    if secure and parts.hostname and not parts.query and not parts.fragment:
        return value
    raise ConfigError(f"{name} must be an https:// URL (http:// only for a loopback emulator), got {value!r}")


def _check_base_url(url: str, name: str) -> None:
    """Refuse a URL with a path: the relay appends ``/openai/v1/...`` (or ``/openai/deployments/...``) itself."""
    parts = urlsplit(url)
    if parts.path not in ("", "/"):
        raise ConfigError(
            f"{name} must be the resource's base URL, {parts.scheme}://{parts.netloc}, without a path "
            f"(the relay adds /openai/v1/ itself), got {url!r}"
        )


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value
