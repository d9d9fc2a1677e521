"""meshctl: the operator's command line (bootstraps, registration, and later config)."""
