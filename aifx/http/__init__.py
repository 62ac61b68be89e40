"""The HTTP face of the service: the FastAPI app and its routers, guards, body limits, rate limit, response
models, the native BentoML APIs and start-up wiring. The request path itself lives in aifx.serving."""
