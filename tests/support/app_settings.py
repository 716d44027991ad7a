"""The app settings a relay needs to start (README.md lists them): the tests' baseline, extended per test."""

from __future__ import annotations

REQUIRED_SETTINGS = {
    "AZURE_OPENAI_ENDPOINT": "https://contoso-aoai.openai.azure.com",
    "AZURE_OPENAI_DEPLOYMENTS": "gpt-4o-mini",
    "APPLICATION_NAME": "contoso-chat-spa",
}
