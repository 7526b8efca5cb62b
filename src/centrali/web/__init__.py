"""HTTP layer: FastAPI app factory, routers, error handlers."""
