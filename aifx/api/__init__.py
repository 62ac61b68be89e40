"""The REST API (seed routes, seed envelope) and the prediction engine behind it."""
