"""The Defender-aware Azure OpenAI relay: everything deployed besides function_app.py."""
