"""Pure logic of the platform: models, names, Procfile parsing. No I/O."""
