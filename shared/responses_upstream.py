"""The Foundry project endpoint the Responses API is relayed to, and how the relay authenticates to it.

A project endpoint (``https://<resource>.services.ai.azure.com/api/projects/<project>``) serves
the Responses API under ``/openai/v1/responses`` ("Microsoft Foundry SDKs and endpoints",
learn.microsoft.com/azure/foundry/how-to/develop/sdk-overview). Its tokens are for the audience
``https://ai.azure.com`` (the scope the Foundry SDKs ask for), not Azure OpenAI's
``https://cognitiveservices.azure.com``, and the relay's identity needs the Azure AI User role
(renamed Foundry User) on the Foundry resource or project ("Role-based access control for
Microsoft Foundry", learn.microsoft.com/azure/foundry/concepts/rbac-foundry).
"""

from __future__ import annotations

from urllib.parse import quote

from shared.config import Settings
from shared.upstream import Upstream
from shared.upstream_auth import BearerTokenAuth, CachedToken, create_credential, credential_hint

FOUNDRY_SCOPE = "https://ai.azure.com/.default"
PROJECT_REJECTION = (
    "the Foundry project refused the relay's token (audience https://ai.azure.com): check that the identity "
    "(AZURE_CLIENT_ID, or your `az login` locally) has the Azure AI User role on the project named by AZURE_AI_PROJECT_ENDPOINT"
)


def project_upstream(settings: Settings) -> Upstream:
    """The production client of the project endpoint: the relay's managed identity (or developer login), its own token."""
    token = CachedToken(create_credential(settings), FOUNDRY_SCOPE, hint=credential_hint(settings))
    return Upstream(settings, BearerTokenAuth(token, PROJECT_REJECTION))


def project_url(settings: Settings, collection: str = "responses", object_id: str | None = None, action: str | None = None) -> str:
    """The URL of a collection of the project's OpenAI v1 API (``responses``, ``conversations``), or of one object
    in it by its service id, and of a route under that object (``cancel``, ``input_items``, ``items``)."""
    url = f"{settings.responses.project_endpoint}/openai/v1/{collection}"
    if object_id is not None:
        url += "/" + quote(object_id, safe="")
    if action is not None:
        url += "/" + action
    return url
