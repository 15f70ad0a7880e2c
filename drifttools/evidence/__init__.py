"""Evidence: the report, bundles and exports the pipeline writes."""
