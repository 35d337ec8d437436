"""TEMPORARY re-export for the pricer, which still imports ingest's parser (issue 11 moves that
use out of the pricer); delete once `services.pricer` no longer imports `services.ingest`."""

from services.ingest.domain.national import ListRejected, case_fields, parse_settlement_list

__all__ = ["ListRejected", "case_fields", "parse_settlement_list"]
