"""Azure Functions entry point (v2 programming model): registers the relay's routes, nothing else.

Configuration is validated here, at start-up: a bad setting stops the app with
a message naming it. Easy Auth is the gate, so every function is anonymous.
"""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response

from shared.gc_tuning import tune_garbage_collector
from shared.relay import Relay

relay = Relay.from_env()
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
tune_garbage_collector()


@app.route(route="v1/chat/completions", methods=[func.HttpMethod.POST])
async def chat_completions(req: Request) -> Response:
    return await relay.chat_completions(req)


@app.route(route="v1/models", methods=[func.HttpMethod.GET])
async def models(req: Request) -> Response:
    return await relay.models(req)


@app.route(route="me", methods=[func.HttpMethod.GET])
async def me(req: Request) -> Response:
    return await relay.me(req)


@app.route(route="healthz", methods=[func.HttpMethod.GET])
async def healthz(req: Request) -> Response:
    return await relay.healthz(req)


# The Responses API: relayed to a Foundry project endpoint when AZURE_AI_PROJECT_ENDPOINT is set, else the 404 below.
@app.route(route="v1/responses", methods=[func.HttpMethod.POST])
async def responses_create(req: Request) -> Response:
    return await relay.responses(req, "create")


@app.route(route="v1/responses/{response_id}", methods=[func.HttpMethod.GET, func.HttpMethod.DELETE])
async def responses_retrieve_or_delete(req: Request) -> Response:
    return await relay.responses(req, "delete" if req.method == "DELETE" else "retrieve")


@app.route(route="v1/responses/{response_id}/cancel", methods=[func.HttpMethod.POST])
async def responses_cancel(req: Request) -> Response:
    return await relay.responses(req, "cancel")


@app.route(route="v1/responses/{response_id}/input_items", methods=[func.HttpMethod.GET])
async def responses_input_items(req: Request) -> Response:
    return await relay.responses(req, "input_items")


# The Conversations API, whose conversations a response may continue (the same project, the same binding of ids).
@app.route(route="v1/conversations", methods=[func.HttpMethod.POST])
async def conversations_create(req: Request) -> Response:
    return await relay.responses(req, "conversation_create")


@app.route(route="v1/conversations/{conversation_id}", methods=[func.HttpMethod.GET, func.HttpMethod.DELETE])
async def conversations_retrieve_or_delete(req: Request) -> Response:
    return await relay.responses(req, "conversation_delete" if req.method == "DELETE" else "conversation_retrieve")


@app.route(route="v1/conversations/{conversation_id}/items", methods=[func.HttpMethod.GET])
async def conversations_items(req: Request) -> Response:
    return await relay.responses(req, "conversation_items")


# Any other /api/v1 route (embeddings, files, a conversation's items, ...): an OpenAI-shaped 404 naming the routes
# served and each client's Chat Completions switch. Literal routes above take precedence over this catch-all.
@app.route(
    route="v1/{*path}",
    methods=[func.HttpMethod.GET, func.HttpMethod.POST, func.HttpMethod.PUT, func.HttpMethod.PATCH, func.HttpMethod.DELETE],
)
async def unsupported_v1_route(req: Request) -> Response:
    return await relay.unsupported_route(req)
