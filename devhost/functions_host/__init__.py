"""A local stand-in for the Azure Functions host that serves the relay through the real Python worker."""
