"""The request path and the parts behind it (no web framework): inputs, versions, windows, stage scores,
decisions, side effects and answers; the outcome loop, signals, A/B tests and the promoter."""
