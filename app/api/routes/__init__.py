"""One router per resource: compare, batch, maps, operations, and the page (with the docs)."""
