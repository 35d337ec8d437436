"""A negotiation round's report (协商谈判, docs/domain.md §14): each item that was commented on or
changed, with its comments, the bureau's answers and what the adopted version changed. Pure.

The rows serve both downloads: CSV (`shared.csvexport`) and a small HTML page. The page is
rendered here, next to the rows, so that the two cannot drift apart; every value is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

REPORT_COLUMNS = ("item", "draft_value", "adopted_value", "change_reason", "change_comment_ids", "comment_id",
                  "hospital_code", "kind", "reason", "counter_proposal", "answer", "answer_reason")
_HEADINGS = {"item": "项目 item", "draft_value": "草案值 draft", "adopted_value": "采纳值 adopted",
             "change_reason": "修改理由 why changed", "change_comment_ids": "依据意见 comments",
             "comment_id": "意见 comment", "hospital_code": "医院 hospital", "kind": "类型 kind",
             "reason": "理由 reason", "counter_proposal": "建议值 counter-proposal", "answer": "答复 answer",
             "answer_reason": "答复理由 answer reason"}


def report_rows(items: Mapping[str, str | None], comments: Sequence[Mapping[str, Any]],
                changes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per comment (with its item's change, if any), then one per change no comment was
    made on the item of; ordered by item."""
    by_item = {ch["item"]: ch for ch in changes}
    rows: list[dict[str, Any]] = []

    def base(item: str) -> dict[str, Any]:
        ch = by_item.get(item)
        return {"item": item, "draft_value": ch["draft_value"] if ch else items.get(item),
                "adopted_value": ch["adopted_value"] if ch else None,
                "change_reason": ch["reason"] if ch else None,
                "change_comment_ids": " ".join(map(str, ch["comment_ids"])) if ch else None}

    for c in comments:
        rows.append(base(c["item"]) | {
            "comment_id": c["id"], "hospital_code": c["hospital_code"], "kind": c["kind"], "reason": c["reason"],
            "counter_proposal": c["counter_proposal"], "answer": c["answer"], "answer_reason": c["answer_reason"]})
    commented = {c["item"] for c in comments}
    rows += [base(item) for item in by_item if item not in commented]
    return sorted(rows, key=lambda r: (r["item"], r.get("comment_id") or 0))


def report_html(draft: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    """The report as one self-contained HTML page."""
    def cell(value: Any) -> str:
        return "" if value is None else escape(str(value))

    title = f"协商谈判报告 Negotiation report: {draft.get('title')}"
    facts = [("draft", draft.get("id")), ("kind", draft.get("kind")), ("policy", draft.get("policy_id")),
             ("status", draft.get("status")), ("window", f"{draft.get('opens')} – {draft.get('closes')}"),
             ("adopted version", draft.get("adopted_version")), ("in force from", draft.get("adopted_from"))]
    head = "".join(f"<th>{cell(_HEADINGS[c])}</th>" for c in REPORT_COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in REPORT_COLUMNS) + "</tr>\n"
                   for r in rows)
    objections = sum(1 for r in rows if r.get("kind") == "objection")
    changed = sum(1 for r in rows if r.get("adopted_value") is not None and r.get("comment_id") is None) + len(
        {r["item"] for r in rows if r.get("adopted_value") is not None and r.get("comment_id") is not None})
    return (
        "<!doctype html>\n<html lang=\"zh\"><head><meta charset=\"utf-8\">"
        f"<title>{cell(title)}</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:2px 6px;vertical-align:top}</style></head><body>\n"
        f"<h1>{cell(title)}</h1>\n<dl>"
        + "".join(f"<dt>{cell(k)}</dt><dd>{cell(v)}</dd>" for k, v in facts)
        + f"</dl>\n<p>{sum(1 for r in rows if r.get('comment_id') is not None)} comments, {objections} objections, "
        f"{changed} items changed on adoption.</p>\n"
        f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>\n</body></html>\n")
