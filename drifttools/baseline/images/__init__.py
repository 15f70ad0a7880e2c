"""Where image blobs are read from: one module per storage format."""
