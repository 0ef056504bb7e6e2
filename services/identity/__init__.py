"""A development stand-in for Keycloak: the part of its OIDC surface the mesh uses.

It serves discovery, the JWKS and the client-credentials token endpoint of one
realm, configured from the same realm-export file that Keycloak imports, with
each client's secret read from Secrets Manager. Optional client scopes choose a
token's audience, and a DPoP proof binds a token to the caller's key.
"""
