"""Stage runners composed inside the entry service: Stage 1 ReversalDetector and Stage 2 DirectionClassifier."""
