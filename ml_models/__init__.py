"""Training and the model bundle format shared with the service."""
