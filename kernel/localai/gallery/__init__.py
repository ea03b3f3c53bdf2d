"""Galleries: backend (and later model) indexes, capability detection, OCI pulls, installs and jobs."""
