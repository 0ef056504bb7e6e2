"""The validator: scores extracted documents against rules for their type."""
