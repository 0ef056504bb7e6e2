"""The orchestrator: accepts documents and runs extractor → validator → archivist."""
