"""Stage services: Stage 1 ReversalDetector and Stage 2 DirectionClassifier."""
