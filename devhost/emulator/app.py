"""The emulator's three apps, sharing one :class:`EmulatorState`: plain HTTP (managed identity,
Azure OpenAI, a Foundry project's Responses API, control endpoints), and HTTPS: Key Vault, and
Application Insights' ingestion."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp

from devhost.emulator import aoai, control, conversations, identity, ingestion, keyvault, responses_api, telemetry_page
from devhost.emulator.emulator_config import EmulatorConfig
from devhost.emulator.state import EmulatorState
from devhost.emulator.tokens import TokenIssuer
from devhost.emulator.transport import RawSendMiddleware
from devhost.emulator.vault import SecretStore


def create_state(config: EmulatorConfig) -> EmulatorState:
    vault = SecretStore()
    for name, value in config.keyvault_secrets.items():
        vault.set(name, value)
    return EmulatorState(
        config=config,
        issuer=TokenIssuer(config.token_lifetime_s),
        api_key=config.api_key,
        vault=vault,
    )


def create_app(config: EmulatorConfig, state: EmulatorState | None = None) -> ASGIApp:
    app = Starlette(
        routes=[
            Route("/msi/token", identity.msi_token, methods=["GET"]),
            Route("/openai/v1/chat/completions", aoai.chat_v1, methods=["POST"]),
            Route(
                "/openai/deployments/{deployment}/chat/completions",
                aoai.chat_dated,
                methods=["POST"],
            ),
            *_project_routes("/api/projects/{project}/openai/v1"),
            Route("/_emulator/healthz", control.healthz, methods=["GET"]),
            Route("/_emulator/requests", control.list_requests, methods=["GET"]),
            Route("/_emulator/requests", control.clear_requests, methods=["DELETE"]),
            Route("/_emulator/stats", control.stats, methods=["GET"]),
            Route("/_emulator/reset", control.reset, methods=["POST"]),
            Route("/_emulator/config", control.configure, methods=["POST"]),
            Route("/_emulator/keyvault/secrets/{name}", control.set_secret, methods=["PUT"]),
            Route("/_emulator/telemetry", telemetry_page.list_telemetry, methods=["GET"]),
            Route("/_emulator/telemetry", telemetry_page.clear_telemetry, methods=["DELETE"]),
            Route("/_emulator/telemetry/page", telemetry_page.telemetry_page, methods=["GET"]),
        ]
    )
    app.state.emulator = state or create_state(config)
    # Outermost, so that it sees uvicorn's own send (see devhost.emulator.transport).
    return RawSendMiddleware(app)


def _project_routes(base: str) -> list[Route]:
    """A Foundry project endpoint's Responses and Conversations APIs."""
    return [
        Route(f"{base}/responses", responses_api.create, methods=["POST"]),
        Route(f"{base}/responses/{{response_id}}", responses_api.retrieve, methods=["GET"]),
        Route(f"{base}/responses/{{response_id}}", responses_api.delete, methods=["DELETE"]),
        Route(f"{base}/responses/{{response_id}}/cancel", responses_api.cancel, methods=["POST"]),
        Route(f"{base}/responses/{{response_id}}/input_items", responses_api.list_input_items, methods=["GET"]),
        Route(f"{base}/conversations", conversations.create, methods=["POST"]),
        Route(f"{base}/conversations/{{conversation_id}}", conversations.retrieve, methods=["GET"]),
        Route(f"{base}/conversations/{{conversation_id}}", conversations.delete, methods=["DELETE"]),
        Route(f"{base}/conversations/{{conversation_id}}/items", conversations.list_items, methods=["GET"]),
    ]


def create_ingestion_app(state: EmulatorState) -> Starlette:
    # The exporter joins the connection string's IngestionEndpoint, which ends in "/" as Azure writes it, and
    # "/v2.1/track": Azure's front door takes the doubled slash, so the stand-in does too.
    app = Starlette(routes=[Route(path, ingestion.track, methods=["POST"]) for path in ("/v2.1/track", "//v2.1/track")])
    app.state.emulator = state
    return app


def create_keyvault_app(state: EmulatorState) -> Starlette:
    app = Starlette(
        routes=[
            Route("/secrets/{name}/versions", keyvault.list_versions, methods=["GET"]),
            Route("/secrets/{name}", keyvault.get_secret, methods=["GET"]),
            Route("/secrets/{name}/{version}", keyvault.get_secret, methods=["GET"]),
        ]
    )
    app.state.emulator = state
    return app
