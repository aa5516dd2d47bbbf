"""The REST API: FastAPI routers over the service layer."""
