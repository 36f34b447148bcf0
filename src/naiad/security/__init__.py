"""Access control shared by both frontends: restricted API groups, bearer tokens, TLS files."""
