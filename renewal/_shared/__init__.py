"""Helpers every part of the app shares (HTTP without redirects, PEM, URLs, secret settings); internal."""
