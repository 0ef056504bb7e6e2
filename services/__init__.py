"""The mesh's services: orchestrator, extractor, validator, archivist."""
