"""The extractor service: text, tables and key fields from PDF, CSV/TSV and text."""
