"""The HTTP layer: routes, request/response schemas, error mapping, middleware."""
