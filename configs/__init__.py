"""Bundled configuration files, one YAML per model (installed as the package data of zoo.configs)."""
