"""Start the mesh's dependencies and services as local processes, without Docker."""
