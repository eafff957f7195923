"""End-to-end jobs behind the CLI commands: data -> task -> bundle -> outputs. No click here."""
