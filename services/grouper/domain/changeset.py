"""Local schemes as change sets over a national scheme (domain §14, "Localisation").

A bureau writes its refinement of a national scheme as one JSON document (the format is
documented in `docs/scheme-changesets.md`): metadata, then an ordered list of operations —
split a DRG, merge DRGs of one ADRG, rename a group, add or remove codes of a list.

* `parse_change_set(raw)` checks the document's shape and returns a `ChangeSet`;
* `apply_change_set(base, docs, change_set)` checks every operation against the base scheme
  and returns the documents of the local scheme (`SchemeDocs`);
* `read_scheme_docs` / `write_scheme_folder` read a scheme folder as plain JSON documents and
  write the local scheme as a folder in the same format, which `load_scheme` loads like any
  other;
* `compile_local_scheme(base, docs)` compiles the local scheme in memory (the base's code
  tables, the new documents), so that a change set can be checked and cases regrouped under it
  before anything is written;
* `change_summary(diff)` says what a local scheme changed, `migration_table(diff)` which
  cases moved, both from `diff_schemes`.

Every problem is collected and raised together as `ChangeSetError`, each naming the
operation (its index and kind) and the field: ``operations[2].into[0].code (split_drg GZ13):
code 'GZ11' already exists in chs-drg-1.1``.

The national ADRG core stays unchanged: operations change only DRG rules, names and lists.
A list that an ADRG or MDC entry rule reads may be edited only by a change set marked
`"provincial": true` (a provincial refinement, reviewed by the province).

Why the rewritten rules keep every other case where it was: a split replaces DRG d (rule r)
by parts `all(r, c1)`, …, `all(r, ck-1)`, `r` at d's position, so exactly d's cases are
shared out and the first-match order of the other DRGs is untouched; a merge replaces DRGs
that are adjacent in their ADRG's order by one DRG whose rule is `any` of theirs.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import detail

from .diff import SchemeDiff
from .errors import ChangeSetError
from .scheme import FILE_KEYS, Scheme, compile_scheme

FORMAT_VERSION = 1
OPERATIONS = ("split_drg", "merge_drgs", "rename", "edit_list")
SPLIT_BY = ("age", "los", "birth_weight", "procedures", "diagnoses")
# For each numeric split: the rule conditions of [min, max).
_RANGE_CONDITIONS = {
    "age": ("age_years_ge", "age_years_lt"),
    "los": ("los_ge", "los_lt"),
    "birth_weight": ("birth_weight_ge", "birth_weight_lt"),
}
_MATCH = {
    "procedures": {"any": "any_px_in", "main": "main_px_in"},
    "diagnoses": {"any": "any_dx_in", "principal": "pdx_in", "secondary": "any_sec_dx_in"},
}
_DX_CONDITIONS = frozenset({"pdx_in", "any_dx_in", "any_sec_dx_in"})
_PX_CONDITIONS = frozenset({"main_px_in", "any_px_in"})
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,23}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TOP_KEYS = {"format_version", "id", "name", "base", "region", "author", "provincial",
             "description", "operations"}
_OP_KEYS = {
    "split_drg": {"op", "drg", "by", "into", "note"},
    "merge_drgs": {"op", "drgs", "into", "note"},
    "rename": {"op", "group", "name", "code", "note"},
    "edit_list": {"op", "list", "add", "remove", "note"},
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a change set: the field (a path such as
    `operations[1].into[0].code`), what operation it belongs to, and the message."""

    field: str
    message: str
    operation: str = ""  # e.g. "split_drg GZ13"

    def __str__(self) -> str:
        op = f" ({self.operation})" if self.operation else ""
        return f"{self.field}{op}: {self.message}"


def change_set_error(problems: list[Problem]) -> ChangeSetError:
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return ChangeSetError(
        f"{first}{more}",
        field=first.field,
        details=[detail(p.field, ChangeSetError.default_code, str(p)) for p in problems],
    )


@dataclass(frozen=True)
class ChangeSet:
    """A parsed change set: its metadata, operations (as written) and the SHA-256 of the file."""

    id: str
    name: str
    base: str
    region: str
    author: str
    provincial: bool
    operations: tuple[Mapping[str, Any], ...]
    sha256: str
    description: str = ""

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "sha256": self.sha256, "region": self.region,
                "author": self.author, "provincial": self.provincial,
                "operations": len(self.operations)}


# --------------------------------------------------------------------------- shape


def parse_change_set(raw: bytes) -> ChangeSet:
    """Check the document's shape (types, required fields, known operations); the checks
    against a base scheme are `apply_change_set`'s."""
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise change_set_error([Problem("(file)", f"not valid UTF-8 ({e.reason})")]) from None
    except json.JSONDecodeError as e:
        raise change_set_error(
            [Problem("(file)", f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}")]
        ) from None
    if not isinstance(doc, dict):
        raise change_set_error([Problem("(file)", "a change set is a JSON object")])
    problems: list[Problem] = []
    for key in sorted(set(doc) - _TOP_KEYS):
        problems.append(Problem(key or '""', f"unknown field (known: {', '.join(sorted(_TOP_KEYS))})"))
    version = doc.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION or isinstance(version, bool):
        problems.append(Problem("format_version", f"must be {FORMAT_VERSION}, got {version!r}"))
    meta: dict[str, str] = {}
    for key in ("id", "name", "base", "region", "author"):
        value = doc.get(key)
        if not isinstance(value, str) or not value.strip():
            problems.append(Problem(key, "required, a non-empty string"))
        else:
            meta[key] = value
    if "id" in meta and not _ID.match(meta["id"]):
        problems.append(Problem("id", "use letters, digits, '.', '_' or '-' (it names the scheme)"))
    description = doc.get("description", "")
    if not isinstance(description, str):
        problems.append(Problem("description", "must be a string"))
    provincial = doc.get("provincial", False)
    if not isinstance(provincial, bool):
        problems.append(Problem("provincial", f"must be true or false, got {provincial!r}"))
    ops = doc.get("operations")
    if not isinstance(ops, list) or not ops:
        problems.append(Problem("operations", "required, a non-empty array of operations"))
        ops = []
    for i, op in enumerate(ops):
        problems.extend(_check_shape(i, op))
    if problems:
        raise change_set_error(problems)
    return ChangeSet(
        id=meta["id"], name=meta["name"], base=meta["base"], region=meta["region"],
        author=meta["author"], provincial=provincial, operations=tuple(ops),
        sha256=hashlib.sha256(raw).hexdigest(), description=description,
    )


def _label(op: Mapping[str, Any]) -> str:
    kind = op.get("op")
    listed = op.get("drgs")
    drgs: list[Any] = listed if isinstance(listed, list) else []
    subject = {"split_drg": op.get("drg"), "rename": op.get("group"), "edit_list": op.get("list"),
               "merge_drgs": "+".join(x for x in drgs if isinstance(x, str))}
    s = subject.get(kind) if isinstance(kind, str) else None
    return f"{kind} {s}" if isinstance(s, str) and s else str(kind)


def _check_shape(i: int, op: Any) -> list[Problem]:
    at = f"operations[{i}]"
    if not isinstance(op, dict):
        return [Problem(at, "an operation is an object with an 'op' field")]
    kind = op.get("op")
    if kind not in OPERATIONS:
        return [Problem(f"{at}.op", f"unknown operation {kind!r} (known: {', '.join(OPERATIONS)})")]
    label = _label(op)
    out: list[Problem] = []

    def bad(path: str, message: str) -> None:
        out.append(Problem(f"{at}.{path}", message, label))

    for key in sorted(set(op) - _OP_KEYS[kind]):
        bad(key, f"unknown field for {kind} (known: {', '.join(sorted(_OP_KEYS[kind] - {'op'}))})")
    if "note" in op and not isinstance(op["note"], str):
        bad("note", "must be a string")

    def code_field(obj: Mapping[str, Any], key: str, path: str) -> None:
        v = obj.get(key)
        if not isinstance(v, str) or not _CODE.match(v):
            bad(path, f"required, a group code of letters, digits, '.', '_' or '-', got {v!r}")

    def name_field(obj: Mapping[str, Any], key: str, path: str) -> None:
        v = obj.get(key)
        if not isinstance(v, str) or not v.strip():
            bad(path, "required, a non-empty name")

    def codes_field(obj: Mapping[str, Any], key: str, path: str, required: bool) -> None:
        v = obj.get(key)
        if v is None and not required:
            return
        if not isinstance(v, list) or not v:
            bad(path, "required, a non-empty array of codes" if required else "must be a non-empty array of codes")
            return
        for j, c in enumerate(v):
            if not isinstance(c, str) or not c:
                bad(f"{path}[{j}]", f"must be a code string, got {c!r}")
        dupes = sorted({c for c in v if isinstance(c, str) and v.count(c) > 1})
        if dupes:
            bad(path, f"repeats {', '.join(dupes)}")

    if kind == "split_drg":
        code_field(op, "drg", "drg")
        by = op.get("by")
        if by not in SPLIT_BY:
            bad("by", f"must be one of {', '.join(SPLIT_BY)}, got {by!r}")
        into = op.get("into")
        if not isinstance(into, list) or len(into) < 2:
            bad("into", "required, an array of at least two parts {code, name, condition}")
            return out
        for j, part in enumerate(into):
            path = f"into[{j}]"
            if not isinstance(part, dict):
                bad(path, "a part is an object {code, name, condition}")
                continue
            code_field(part, "code", f"{path}.code")
            name_field(part, "name", f"{path}.name")
            if by in SPLIT_BY:
                _check_part_condition(part, by, j == len(into) - 1, path, bad)
    elif kind == "merge_drgs":
        drgs = op.get("drgs")
        if not isinstance(drgs, list) or len(drgs) < 2:
            bad("drgs", "required, an array of at least two DRG codes")
        else:
            for j, d in enumerate(drgs):
                if not isinstance(d, str) or not d:
                    bad(f"drgs[{j}]", f"must be a DRG code, got {d!r}")
            if len(set(map(str, drgs))) != len(drgs):
                bad("drgs", "names a DRG twice")
        into = op.get("into")
        if not isinstance(into, dict):
            bad("into", "required, an object {code, name}")
        else:
            for key in sorted(set(into) - {"code", "name"}):
                bad(f"into.{key}", "unknown field (known: code, name)")
            code_field(into, "code", "into.code")
            name_field(into, "name", "into.name")
    elif kind == "rename":
        code_field(op, "group", "group")
        name_field(op, "name", "name")
        if "code" in op:
            code_field(op, "code", "code")
    elif kind == "edit_list":
        lid = op.get("list")
        if not isinstance(lid, str) or not lid:
            bad("list", "required, a list id of the scheme's lists.json")
        codes_field(op, "add", "add", required=False)
        codes_field(op, "remove", "remove", required=False)
        if not op.get("add") and not op.get("remove"):
            bad("add", "give codes to add, to remove, or both")
    return out


def _check_part_condition(part: Mapping[str, Any], by: str, last: bool, path: str, bad) -> None:
    allowed = {"code", "name"}
    if by in _RANGE_CONDITIONS:
        allowed |= {"min", "max"}
        given = [k for k in ("min", "max") if k in part]
        for k in given:
            v = part[k]
            if type(v) is not int or v < 0:
                bad(f"{path}.{k}", f"must be a whole number ≥ 0, got {v!r}")
        if all(type(part.get(k)) is int for k in ("min", "max")) and part["min"] >= part["max"]:
            bad(f"{path}.max", f"must be greater than min ({part['min']}): the range is [min, max)")
    else:
        allowed |= {"codes", "list", "match"}
        given = [k for k in ("codes", "list") if k in part]
        if len(given) == 2:
            bad(f"{path}.list", "give either codes or list, not both")
        if "codes" in part:
            v = part["codes"]
            if not isinstance(v, list) or not v or not all(isinstance(c, str) and c for c in v):
                bad(f"{path}.codes", "must be a non-empty array of code strings")
        if "list" in part and (not isinstance(part["list"], str) or not part["list"]):
            bad(f"{path}.list", "must be a list id of the scheme's lists.json")
        if "match" in part:
            if not given:
                bad(f"{path}.match", "only a part with codes or list has a match")
            elif part["match"] not in _MATCH[by]:
                bad(f"{path}.match", f"must be one of {', '.join(_MATCH[by])}, got {part['match']!r}")
    for key in sorted(set(part) - allowed):
        bad(f"{path}.{key}", f"unknown field for a split by {by} (known: {', '.join(sorted(allowed))})")
    if last and given:
        bad(path, "the last part takes the remaining cases of the DRG: leave out its condition")
    if not last and not given:
        what = "min and/or max" if by in _RANGE_CONDITIONS else "codes or list"
        bad(path, f"needs a condition ({what}); only the last part takes the remaining cases")


# --------------------------------------------------------------------------- documents


@dataclass
class SchemeDocs:
    """A scheme folder's JSON documents as plain data (manifest, mdc, adrg, drg, lists)."""

    manifest: dict[str, Any]
    mdc: dict[str, Any]
    adrg: dict[str, Any]
    drg: dict[str, Any]
    lists: dict[str, list[str]]

    def counts(self) -> dict[str, int]:
        return {"mdcs": len(self.mdc["mdcs"]), "adrgs": len(self.adrg["adrgs"]),
                "drgs": len(self.drg["drgs"]), "lists": len(self.lists),
                "list_codes_total": sum(len(v) for v in self.lists.values())}


def read_scheme_docs(scheme: Scheme) -> SchemeDocs:
    """The JSON documents of a loaded scheme's folder (already validated by `load_scheme`)."""
    if scheme.path is None:
        raise ValueError("the scheme was not loaded from a folder")
    root, files = scheme.path, scheme.manifest["files"]

    def read(key: str) -> Any:
        return json.loads((root / files[key]).read_text("utf-8"))

    return SchemeDocs(dict(scheme.manifest), read("mdc"), read("adrg"), read("drg"), read("lists"))


def write_scheme_folder(base: Scheme, docs: SchemeDocs, out: Path, change_set_raw: bytes) -> None:
    """Write the local scheme as a folder in the base's format: its JSON documents, the base's
    code tables (copied unchanged), the base's licence file, and the change set itself
    (`changeset.json`, whose SHA-256 the manifest records)."""
    assert base.path is not None
    out.mkdir(parents=True, exist_ok=True)
    files = docs.manifest["files"]
    for key, header in FILE_KEYS.items():
        if header is not None:
            shutil.copyfile(base.path / base.manifest["files"][key], out / files[key])
    for key in ("mdc", "adrg", "drg", "lists"):
        text = json.dumps(getattr(docs, key), ensure_ascii=False, indent=1)
        (out / files[key]).write_text(text + "\n", "utf-8")
    for licence in base.path.glob("LICENSE*"):
        shutil.copyfile(licence, out / licence.name)
    (out / "changeset.json").write_bytes(change_set_raw)
    (out / "scheme.json").write_text(
        json.dumps(docs.manifest, ensure_ascii=False, indent=2) + "\n", "utf-8")


def compile_local_scheme(base: Scheme, docs: SchemeDocs) -> Scheme:
    """The local scheme as `load_scheme` would load it from `write_scheme_folder`'s folder, but
    compiled in memory: the base's code tables (a build copies them unchanged) with the new
    documents. It has no `path`."""
    files = docs.manifest["files"]
    tables = {"diagnoses": base.diagnosis_names, "procedures": base.procedure_names,
              "diagnosis_map": base.diagnosis_map, "procedure_map": base.procedure_map,
              "cc": base.cc, "mcc": base.mcc, "cc_exclusion": base.cc_exclusion,
              "or_procedures": base.or_procedures}
    lists = {lid: frozenset(codes) for lid, codes in docs.lists.items()}
    return compile_scheme(None, docs.manifest, files, tables, lists,
                          {"mdc": docs.mdc, "adrg": docs.adrg, "drg": docs.drg})


def change_summary(d: SchemeDiff) -> dict[str, Any]:
    """What a local scheme changed from its base (`diff_schemes(base, local)`): the groups
    added, split, merged, recoded and renamed, the lists added or edited."""
    kinds = {"split": "split", "merge": "merged", "recode": "recoded", "regroup": "regrouped"}
    out: dict[str, Any] = {
        "base": d.a, "scheme": d.b,
        "groups_added": d.drgs_added, "groups_removed": d.drgs_removed,
        **{name: [{"adrg": g.adrg, "before": list(g.before), "after": list(g.after)}
                  for g in d.group_changes if g.kind == kind] for kind, name in kinds.items()},
        "renamed": [{"kind": r.kind, "code": r.code, "before": r.before, "after": r.after} for r in d.renames],
        "lists_added": d.lists_added,
        "lists_changed": [{"list": c.list_b, "added": list(c.added), "removed": list(c.removed)}
                          for c in d.list_changes],
    }
    return out


def migration_table(d: SchemeDiff) -> dict[str, Any]:
    """The cases `diff_schemes` regrouped under both schemes: how many, how many moved, and
    how many went from each old group to each new one (moved cases only; most first)."""
    return {"cases": d.cases, "moved": d.moved_cases,
            "moves": [{"from": a, "to": b, "cases": n}
                      for (a, b), n in sorted(d.moves.items(), key=lambda kv: (-kv[1], kv[0]))]}


# --------------------------------------------------------------------------- semantics


@dataclass
class _State:
    """The local scheme being built, and what the checks need to know about the base."""

    base: Scheme
    docs: SchemeDocs
    drg_entries: list[dict[str, Any]]
    adrg_by_code: dict[str, dict[str, Any]]
    taken: dict[str, str]  # code → what holds it ("DRG in chs-drg-1.1", "operations[1]")
    gone: dict[str, str] = field(default_factory=dict)  # DRG code → the operation that removed it
    core_lists: dict[str, list[str]] = field(default_factory=dict)  # list id → entry rules reading it
    list_kinds: dict[str, set[str]] = field(default_factory=dict)  # list id → {"dx", "px"}

    def drg(self, code: str) -> dict[str, Any] | None:
        return next((d for d in self.drg_entries if d["code"] == code), None)


def apply_change_set(base: Scheme, docs: SchemeDocs, cs: ChangeSet) -> SchemeDocs:
    """Check `cs` against the base scheme (loaded `base`, its documents `docs`) and return the
    local scheme's documents. Raises `ChangeSetError` listing every problem found."""
    problems: list[Problem] = []
    if cs.base != base.id:
        problems.append(Problem("base", f"the change set is written over {cs.base!r}, "
                                        f"but the base scheme given is {base.id!r}"))
    if cs.id == base.id:
        problems.append(Problem("id", "must differ from the base scheme's id"))
    new = SchemeDocs(
        manifest=dict(docs.manifest),
        mdc=json.loads(json.dumps(docs.mdc)),
        adrg=json.loads(json.dumps(docs.adrg)),
        drg=json.loads(json.dumps(docs.drg)),
        lists={k: list(v) for k, v in docs.lists.items()},
    )
    st = _State(
        base=base, docs=new, drg_entries=new.drg["drgs"],
        adrg_by_code={a["code"]: a for a in new.adrg["adrgs"]},
        taken={**{m["code"]: f"MDC in {base.id}" for m in new.mdc["mdcs"]},
               **{a["code"]: f"ADRG in {base.id}" for a in new.adrg["adrgs"]},
               **{d["code"]: f"DRG in {base.id}" for d in new.drg["drgs"]}},
    )
    _index_lists(st)
    for i, op in enumerate(cs.operations):
        at, label = f"operations[{i}]", _label(op)
        found: list[Problem] = []

        def bad(path: str, message: str, at=at, label=label, found=found) -> None:
            found.append(Problem(f"{at}.{path}", message, label))

        {"split_drg": _split, "merge_drgs": _merge, "rename": _rename, "edit_list": _edit_list}[
            op["op"]](st, op, at, bad, cs.provincial)
        problems.extend(found)
    if problems:
        raise change_set_error(problems)

    for a in new.adrg["adrgs"]:
        for n, code in enumerate(a["drgs"], start=1):
            entry = st.drg(code)
            assert entry is not None
            entry["order"] = n
    for key in ("mdc", "adrg", "drg"):
        doc = getattr(new, key)
        if "scheme" in doc:
            doc["scheme"] = cs.id
    new.lists = {k: sorted(set(v)) for k, v in new.lists.items()}
    new.manifest = {
        "id": cs.id,
        "title": cs.name,
        "format_version": docs.manifest.get("format_version", 1),
        **({"source": docs.manifest["source"]} if "source" in docs.manifest else {}),
        "derived_from": {"scheme": base.id, "title": base.title, "changeset": cs.summary()},
        "region": cs.region,
        "files": dict(docs.manifest["files"]),
        "counts": {**base.counts(), **new.counts()},
    }
    return new


def _index_lists(st: _State) -> None:
    """Which lists the national core (MDC and ADRG entry rules) reads, and how lists are used
    (diagnosis or procedure codes), for the core check and the dictionary check."""
    s = st.base
    for m in s.mdcs:
        rules = [m.entry] + ([m.ambiguous.rule] if m.ambiguous is not None else [])
        for rule in rules:
            for lid in rule.list_ids():
                st.core_lists.setdefault(lid, []).append(f"MDC {m.code}")
        for lid, _name in m.regions:
            st.core_lists.setdefault(lid, []).append(f"MDC {m.code}")
    for a in s.adrgs.values():
        for lid in dict.fromkeys(a.rule.list_ids()):
            st.core_lists.setdefault(lid, []).append(f"ADRG {a.code}")
    all_rules = [m.entry for m in s.mdcs] + [a.rule for a in s.adrgs.values()] + [
        d.rule for d in s.drgs.values()]
    for rule in all_rules:
        for leaf in rule.leaves_with_lists():
            kind = "dx" if leaf.op in _DX_CONDITIONS else "px" if leaf.op in _PX_CONDITIONS else None
            if kind:
                st.list_kinds.setdefault(leaf.arg, set()).add(kind)
    for m in s.mdcs:
        for lid, _name in m.regions:
            st.list_kinds.setdefault(lid, set()).add("dx")


def _claim(st: _State, code: str, at: str, path: str, bad) -> bool:
    holder = st.taken.get(code)
    if holder is not None:
        bad(path, f"code {code!r} already exists ({holder})")
        return False
    st.taken[code] = at
    return True


def _existing_drg(st: _State, code: str, path: str, bad) -> dict[str, Any] | None:
    entry = st.drg(code)
    if entry is None:
        if code in st.gone:
            bad(path, f"DRG {code} is no longer in the scheme: {st.gone[code]} replaced it")
        elif code in st.adrg_by_code:
            bad(path, f"{code} is an ADRG; this operation takes a DRG code")
        else:
            bad(path, f"DRG {code} is not in {st.base.id}")
    return entry


def _check_codes(st: _State, codes: list[str], kind: str | None, path: str, bad) -> None:
    """Codes added to a diagnosis/procedure list must be in the scheme's dictionary."""
    if kind == "dx":
        book: Collection[str] = st.base.diagnosis_names
        what = "diagnosis"
    elif kind == "px":
        book, what = st.base.procedure_names, "procedure"
    else:
        return
    for j, c in enumerate(codes):
        if c not in book:
            bad(f"{path}[{j}]", f"{c!r} is not in the scheme's {what} dictionary")


def _split(st: _State, op: Mapping[str, Any], at: str, bad, provincial: bool) -> None:
    code, by, parts = op["drg"], op["by"], op["into"]
    entry = _existing_drg(st, code, "drg", bad)
    ranges: list[tuple[int, int | None, int]] = []
    conditions: list[Any] = []
    ok = entry is not None
    for j, part in enumerate(parts):
        ok &= _claim(st, part["code"], at, f"into[{j}].code", bad)
        if j == len(parts) - 1:
            break
        if by in _RANGE_CONDITIONS:
            ge, lt = _RANGE_CONDITIONS[by]
            lo, hi = part.get("min"), part.get("max")
            conds = ([{ge: lo}] if lo is not None else []) + ([{lt: hi}] if hi is not None else [])
            for olo, ohi, oj in ranges:
                if (hi is None or olo < hi) and (ohi is None or (lo or 0) < ohi):
                    bad(f"into[{j}]", f"its range overlaps into[{oj}]'s: a case would go to the "
                                      f"first one only")
                    break
            ranges.append((lo or 0, hi, j))
            conditions.append(conds[0] if len(conds) == 1 else {"all": conds})
            continue
        kind = "dx" if by == "diagnoses" else "px"
        match = _MATCH[by][part.get("match", "any")]
        if "list" in part:
            lid = part["list"]
            if lid not in st.docs.lists:
                bad(f"into[{j}].list", f"list {lid!r} is not in {st.base.id}'s lists.json")
                ok = False
        else:
            lid = f"LOCAL.{part['code']}.{kind}"
            if lid in st.docs.lists:
                bad(f"into[{j}].codes", f"list id {lid!r} (made for this part) already exists")
                ok = False
            _check_codes(st, part["codes"], kind, f"into[{j}].codes", bad)
            st.docs.lists[lid] = list(part["codes"])
            st.list_kinds.setdefault(lid, set()).add(kind)
        conditions.append({match: lid})
    if not ok or entry is None:
        return
    adrg = st.adrg_by_code[entry["adrg"]]
    base_rule = entry["rule"]
    new_entries = []
    for j, part in enumerate(parts):
        if j < len(conditions):
            cond = conditions[j]
            rule = cond if base_rule is True else {"all": [base_rule, cond]}
        else:
            rule = base_rule
        new_entries.append({**entry, "code": part["code"], "name": part["name"], "rule": rule})
    idx = st.drg_entries.index(entry)
    st.drg_entries[idx:idx + 1] = new_entries
    pos = adrg["drgs"].index(code)
    adrg["drgs"][pos:pos + 1] = [p["code"] for p in parts]
    st.gone[code] = f"{at} (split_drg)"


def _merge(st: _State, op: Mapping[str, Any], at: str, bad, provincial: bool) -> None:
    codes, into = op["drgs"], op["into"]
    entries = [_existing_drg(st, c, f"drgs[{j}]", bad) for j, c in enumerate(codes)]
    claimed = _claim(st, into["code"], at, "into.code", bad)
    if not claimed or any(e is None for e in entries):
        return
    found = [e for e in entries if e is not None]
    adrgs = {e["adrg"] for e in found}
    if len(adrgs) > 1:
        where = ", ".join(f"{e['code']} in {e['adrg']}" for e in found)
        bad("drgs", f"DRGs of different ADRGs cannot merge ({where}): the ADRG is the national "
                    f"core; merge DRGs of one ADRG")
        return
    adrg = st.adrg_by_code[found[0]["adrg"]]
    positions = sorted(adrg["drgs"].index(c) for c in codes)
    between = [adrg["drgs"][p] for p in range(positions[0], positions[-1] + 1) if adrg["drgs"][p] not in codes]
    if between:
        bad("drgs", f"DRGs merged must be adjacent in ADRG {adrg['code']}'s order "
                    f"({' '.join(adrg['drgs'])}); {', '.join(between)} lies between them")
        return
    ordered = [adrg["drgs"][p] for p in positions]
    rules = [st.drg(c)["rule"] for c in ordered]  # type: ignore[index]
    rule: Any = True if any(r is True for r in rules) else {"any": rules}
    first = st.drg(ordered[0])
    assert first is not None
    merged = {**first, "code": into["code"], "name": into["name"], "rule": rule}
    idx = st.drg_entries.index(first)
    st.drg_entries[idx] = merged
    for c in ordered[1:]:
        st.drg_entries.remove(st.drg(c))  # type: ignore[arg-type]
    adrg["drgs"][positions[0]:positions[-1] + 1] = [into["code"]]
    for c in ordered:
        st.gone[c] = f"{at} (merge_drgs)"


def _rename(st: _State, op: Mapping[str, Any], at: str, bad, provincial: bool) -> None:
    group = op["group"]
    if group in st.adrg_by_code:
        if "code" in op:
            bad("code", f"ADRG {group} keeps its national code; only its name can change")
            return
        st.adrg_by_code[group]["name"] = op["name"]
        return
    entry = _existing_drg(st, group, "group", bad)
    if entry is None:
        return
    new_code = op.get("code")
    if new_code is not None and new_code != group:
        if not _claim(st, new_code, at, "code", bad):
            return
        adrg = st.adrg_by_code[entry["adrg"]]
        adrg["drgs"][adrg["drgs"].index(group)] = new_code
        entry["code"] = new_code
        st.gone[group] = f"{at} (rename)"
    entry["name"] = op["name"]


def _edit_list(st: _State, op: Mapping[str, Any], at: str, bad, provincial: bool) -> None:
    lid = op["list"]
    if lid not in st.docs.lists:
        bad("list", f"list {lid!r} is not in {st.base.id}'s lists.json")
        return
    readers = st.core_lists.get(lid)
    if readers and not provincial:
        bad("list", f"list {lid!r} is in the entry rule of {', '.join(dict.fromkeys(readers))} "
                    f"(the national ADRG core); only a provincial change set "
                    f"(\"provincial\": true) may change it")
        return
    current = set(st.docs.lists[lid])
    add, remove = op.get("add") or [], op.get("remove") or []
    kinds = st.list_kinds.get(lid, set())
    _check_codes(st, add, next(iter(kinds)) if len(kinds) == 1 else None, "add", bad)
    for j, c in enumerate(add):
        if c in current:
            bad(f"add[{j}]", f"{c!r} is already in list {lid!r}")
    for j, c in enumerate(remove):
        if c not in current:
            bad(f"remove[{j}]", f"{c!r} is not in list {lid!r}")
    both = sorted(set(add) & set(remove))
    if both:
        bad("remove", f"{', '.join(both)} both added and removed")
    st.docs.lists[lid] = sorted((current | set(add)) - set(remove))
