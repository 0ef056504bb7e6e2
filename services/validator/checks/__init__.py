"""The validator's checks, one module per document type plus shared helpers."""
