"""Identity and access: organisations, users, roles, scopes, API tokens, web sessions."""
