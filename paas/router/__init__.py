"""The router: nginx configuration rendered from templates, applied safely."""
