"""Ray Serve applications: the FastAPI ingress with its wire dialects, and the ModelServer."""
