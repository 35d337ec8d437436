"""Ingest's domain core (pure): the national messages, quality control and scores, the flat CSV
layout, and how a received list is decided and what the decision changes (`intake`)."""
