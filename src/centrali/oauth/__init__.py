"""Protocol core: OAuth 2.0 / JOSE logic with no HTTP framework and no database."""
