"""HTTP blueprints: orders (the product), health (probes), errors (problem+json), openapi."""
