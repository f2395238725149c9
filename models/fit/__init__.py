"""Will it fit: memory needed per device and the verdict."""
