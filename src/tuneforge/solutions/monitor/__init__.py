"""The financial-news sentiment monitor: ingest, classify, time series per entity and topic, alerts."""
