"""The ASGI app: HTTP data API, live transports, auth; and the Python client."""

__all__: list[str] = []
