"""The ASGI face of tricorn: scopes, message cycles, app loading. No I/O."""
