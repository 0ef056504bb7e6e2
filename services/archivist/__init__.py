"""The archivist: documents, results and the processing log in PostgreSQL."""
