"""Container runtimes: one module per engine; each returns data, never clients."""
