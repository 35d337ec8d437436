"""Loading and validating a grouping scheme folder (scheme README, "Files").

`load_scheme(path)` reads the manifest `scheme.json` and the files it names, checks them,
compiles every rule and returns a `Scheme` ready to group. Any problem raises
`SchemeError` with a message naming the file and the entry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engine import Engine, GroupResult, make_cc_predicates
from .errors import SchemeError
from .rules import CompileEnv, Rule, parse_rule
from .trace import CcAnalysis
from .validation import CHECKS, DEFAULT_VALIDATION

# Manifest key -> expected TSV header (None for JSON files).
FILE_KEYS: dict[str, tuple[str, str] | None] = {
    "mdc": None,
    "adrg": None,
    "drg": None,
    "lists": None,
    "diagnoses": ("code", "name"),
    "procedures": ("code", "name"),
    "diagnosis_map": ("from", "to"),
    "procedure_map": ("from", "to"),
    "cc": ("code", "exclusion_table"),
    "mcc": ("code", "exclusion_table"),
    "cc_exclusion": ("principal_code", "exclusion_table"),
    "or_procedures": ("code", "name"),
}

CODE_MODES = ("raw", "mapped")


@dataclass(frozen=True)
class Ambiguous:
    """The ambiguous-group (QY) step of an MDC; tested before ADRG index `position`."""

    enabled: bool
    position: int
    rule: Rule
    drg: str


@dataclass(frozen=True)
class Mdc:
    code: str
    name: str
    entry: Rule
    adrgs: tuple[str, ...]
    regions: tuple[tuple[str, str], ...]  # (list id, region name), MDCZ only
    ambiguous: Ambiguous | None


@dataclass(frozen=True)
class Adrg:
    code: str
    name: str
    mdc: str
    rule: Rule
    drgs: tuple[str, ...]


@dataclass(frozen=True)
class Drg:
    code: str
    name: str
    adrg: str
    mdc: str
    rule: Rule


@dataclass(frozen=True)
class Evaluation:
    """Scheme-wide options (quanzhou README, "The `evaluation` block")."""

    validation: tuple[str, ...] = DEFAULT_VALIDATION
    missing_numbers: str = "null"  # "null" | "zero"
    mapped_empty_codes: str = "drop"  # "drop" | "keep"


class Scheme:
    """A loaded, compiled grouping scheme. Immutable after loading; safe to share."""

    def __init__(
        self,
        *,
        path: Path | None,
        manifest: Mapping[str, Any],
        no_group_result: str,
        evaluation: Evaluation,
        mdcs: tuple[Mdc, ...],
        adrgs: Mapping[str, Adrg],
        drgs: Mapping[str, Drg],
        lists: Mapping[str, frozenset[str]],
        diagnosis_names: Mapping[str, str],
        procedure_names: Mapping[str, str],
        diagnosis_map: Mapping[str, str],
        procedure_map: Mapping[str, str],
        cc: Mapping[str, str],
        mcc: Mapping[str, str],
        cc_exclusion: Mapping[str, str],
        or_procedures: Mapping[str, str],
    ):
        self.path = path
        self.manifest = manifest
        self.id: str = str(manifest.get("id", path.name if path else "scheme"))
        self.title: str = str(manifest.get("title", self.id))
        self.no_group_result = no_group_result
        self.evaluation = evaluation
        self.mdcs = mdcs
        self.adrgs = adrgs
        self.drgs = drgs
        self.lists = lists
        self.diagnosis_names = diagnosis_names
        self.procedure_names = procedure_names
        self.diagnosis_map = diagnosis_map
        self.procedure_map = procedure_map
        self.cc = cc
        self.mcc = mcc
        self.cc_exclusion = cc_exclusion
        self.or_procedures = or_procedures
        self._engine = Engine(self)

    def __repr__(self) -> str:
        return f"Scheme({self.id!r}, {len(self.mdcs)} MDC, {len(self.adrgs)} ADRG, {len(self.drgs)} DRG)"

    def group(self, case: Any, *, code_mode: str = "raw", trace: bool = False) -> GroupResult:
        """Group one case (a mapping with sex, age, age_days, birth_weight, diagnoses,
        procedures). Never raises for bad case data; see `engine` for how it is treated."""
        if code_mode == "raw":
            mapped = False
        elif code_mode == "mapped":
            mapped = True
        else:
            raise ValueError(f"code_mode must be 'raw' or 'mapped', got {code_mode!r}")
        if trace:
            return self._engine.group_traced(case, mapped)
        return self._engine.group(case, mapped)

    def cc_analysis(self, case: Any, *, code_mode: str = "raw") -> CcAnalysis | None:
        """The secondary diagnoses at CC/MCC level of a case (as the traced grouping finds them),
        without grouping it; None when the case stops before grouping (input, mapping,
        validation)."""
        return self._engine.cc_analysis(case, code_mode == "mapped")

    def grouper(self, code_mode: str = "raw"):
        """A one-argument fast grouping function, for tight loops."""
        if code_mode not in CODE_MODES:
            raise ValueError(f"code_mode must be 'raw' or 'mapped', got {code_mode!r}")
        engine_group = self._engine.group
        mapped = code_mode == "mapped"
        return lambda case: engine_group(case, mapped)

    def counts(self) -> dict[str, int]:
        return {
            "mdcs": len(self.mdcs),
            "adrgs": len(self.adrgs),
            "drgs": len(self.drgs),
            "lists": len(self.lists),
            "list_codes_total": sum(len(v) for v in self.lists.values()),
            "diagnoses": len(self.diagnosis_names),
            "procedures": len(self.procedure_names),
            "diagnosis_map": len(self.diagnosis_map),
            "procedure_map": len(self.procedure_map),
            "cc": len(self.cc),
            "mcc": len(self.mcc),
            "cc_exclusion": len(self.cc_exclusion),
            "cc_exclusion_tables": len(set(self.cc_exclusion.values())),
            "or_procedures": len(self.or_procedures),
        }


# --------------------------------------------------------------------------- loading


def load_scheme(path: str | Path) -> Scheme:
    """Load, validate and compile the scheme folder at `path`."""
    root = Path(path)
    manifest = _read_json(root, "scheme.json")
    if not isinstance(manifest, dict):
        raise SchemeError("scheme.json: the manifest must be a JSON object")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise SchemeError("scheme.json: 'files' must be an object naming the scheme files")
    names: dict[str, str] = {}
    for key in FILE_KEYS:
        name = files.get(key)
        if not isinstance(name, str) or not name:
            raise SchemeError(f"scheme.json: files.{key} is missing")
        names[key] = name

    tables = {
        key: _read_tsv(root, names[key], header)
        for key, header in FILE_KEYS.items()
        if header is not None
    }
    lists = _load_lists(_read_json(root, names["lists"]), names["lists"])
    docs = {key: _read_json(root, names[key]) for key in ("mdc", "adrg", "drg")}
    return compile_scheme(root, manifest, names, tables, lists, docs)


def compile_scheme(
    root: Path | None,
    manifest: Mapping[str, Any],
    names: Mapping[str, str],
    tables: Mapping[str, Mapping[str, str]],
    lists: dict[str, frozenset[str]],
    docs: Mapping[str, Any],
) -> Scheme:
    """Check and compile a scheme's documents (`docs`: the mdc, adrg and drg JSON documents;
    `tables`: the code tables by manifest key; `names`: the file names, for messages). A
    scheme loaded from a folder has its `root`; one built in memory has none."""
    has_mcc, has_cc = make_cc_predicates(tables["cc"], tables["mcc"], tables["cc_exclusion"])
    env = CompileEnv(lists=lists, has_mcc=has_mcc, has_cc=has_cc)

    mdc_doc, adrg_doc, drg_doc = docs["mdc"], docs["adrg"], docs["drg"]
    mdc_file, adrg_file, drg_file = names["mdc"], names["adrg"], names["drg"]

    drgs = _load_drgs(drg_doc, drg_file, env)
    adrgs = _load_adrgs(adrg_doc, adrg_file, env, drgs)
    if not isinstance(mdc_doc, dict):
        raise SchemeError(f"{mdc_file}: must be a JSON object")
    mdcs = _load_mdcs(mdc_doc, mdc_file, env, adrgs)
    evaluation = _load_evaluation(mdc_doc.get("evaluation"), mdc_file)
    no_group = mdc_doc.get("no_group_result", "0000")
    if not isinstance(no_group, str):
        raise SchemeError(f"{mdc_file}: no_group_result must be a string")

    return Scheme(
        path=root,
        manifest=manifest,
        no_group_result=no_group,
        evaluation=evaluation,
        mdcs=mdcs,
        adrgs=adrgs,
        drgs=drgs,
        lists=lists,
        diagnosis_names=tables["diagnoses"],
        procedure_names=tables["procedures"],
        diagnosis_map=tables["diagnosis_map"],
        procedure_map=tables["procedure_map"],
        cc=tables["cc"],
        mcc=tables["mcc"],
        cc_exclusion=tables["cc_exclusion"],
        or_procedures=tables["or_procedures"],
    )


def _read_text(root: Path, name: str) -> str:
    p = root / name
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SchemeError(f"{name}: file not found in {root}") from None
    except UnicodeDecodeError as e:
        raise SchemeError(f"{name}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise SchemeError(f"{name}: cannot read ({e.strerror})") from None


def _read_json(root: Path, name: str) -> Any:
    text = _read_text(root, name)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SchemeError(f"{name}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def _read_tsv(root: Path, name: str, header: tuple[str, str]) -> dict[str, str]:
    """Two-column TSV → dict. Cells are verbatim: only the line terminator is removed."""
    text = _read_text(root, name)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise SchemeError(f"{name}: empty file (expected header {'<TAB>'.join(header)})")
    out: dict[str, str] = {}
    for lineno, line in enumerate(lines, start=1):
        if line.endswith("\r"):
            line = line[:-1]
        cells = line.split("\t")
        if len(cells) != 2:
            raise SchemeError(
                f"{name}: line {lineno}: expected 2 tab-separated cells, got {len(cells)}"
            )
        if lineno == 1:
            if tuple(cells) != header:
                raise SchemeError(
                    f"{name}: line 1: header must be {'<TAB>'.join(header)}, got {line!r}"
                )
            continue
        key, value = cells
        if key in out and out[key] != value:
            raise SchemeError(f"{name}: line {lineno}: {key!r} repeated with a different value")
        out[key] = value
    return out


def _load_lists(doc: Any, name: str) -> dict[str, frozenset[str]]:
    if not isinstance(doc, dict):
        raise SchemeError(f"{name}: must be an object of list id → array of codes")
    lists: dict[str, frozenset[str]] = {}
    for lid, codes in doc.items():
        if not isinstance(codes, list) or not all(isinstance(x, str) for x in codes):
            raise SchemeError(f"{name}: list {lid!r}: must be an array of code strings")
        lists[lid] = frozenset(codes)
    return lists


def _entries(doc: Any, key: str, file: str) -> list[dict]:
    items = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise SchemeError(f"{file}: must be an object with a '{key}' array")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise SchemeError(f"{file}: {key}[{i}] must be an object")
    return items


def _field(item: dict, key: str, kind: type, where: str) -> Any:
    if key not in item:
        raise SchemeError(f"{where}: missing field '{key}'")
    value = item[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise SchemeError(f"{where}: field '{key}' must be {kind.__name__}, got {value!r}")
    return value


def _code_of(item: dict, file: str, kind: str, i: int) -> str:
    code = item.get("code")
    if not isinstance(code, str) or not code:
        raise SchemeError(f"{file}: {kind} entry {i}: missing or invalid 'code'")
    return code


def _load_drgs(doc: Any, file: str, env: CompileEnv) -> dict[str, Drg]:
    drgs: dict[str, Drg] = {}
    for i, item in enumerate(_entries(doc, "drgs", file)):
        code = _code_of(item, file, "DRG", i)
        where = f"{file}: DRG {code}"
        if code in drgs:
            raise SchemeError(f"{where}: defined twice")
        if "rule" not in item:
            raise SchemeError(f"{where}: missing field 'rule'")
        drgs[code] = Drg(
            code=code,
            name=_field(item, "name", str, where),
            adrg=_field(item, "adrg", str, where),
            mdc=_field(item, "mdc", str, where),
            rule=parse_rule(item["rule"], env, f"{where} rule"),
        )
    return drgs


def _load_adrgs(doc: Any, file: str, env: CompileEnv, drgs: Mapping[str, Drg]) -> dict[str, Adrg]:
    adrgs: dict[str, Adrg] = {}
    for i, item in enumerate(_entries(doc, "adrgs", file)):
        code = _code_of(item, file, "ADRG", i)
        where = f"{file}: ADRG {code}"
        if code in adrgs:
            raise SchemeError(f"{where}: defined twice")
        if "rule" not in item:
            raise SchemeError(f"{where}: missing field 'rule'")
        rule = parse_rule(item["rule"], env, f"{where} rule")
        drg_codes = _field(item, "drgs", list, where)
        for d in drg_codes:
            if not isinstance(d, str):
                raise SchemeError(f"{where}: drgs must be DRG code strings, got {d!r}")
            if d not in drgs:
                raise SchemeError(f"{where}: DRG {d} is referenced but not defined in drg.json")
            if drgs[d].adrg != code:
                raise SchemeError(f"{where}: DRG {d} belongs to ADRG {drgs[d].adrg} in drg.json")
        adrgs[code] = Adrg(
            code=code,
            name=_field(item, "name", str, where),
            mdc=_field(item, "mdc", str, where),
            rule=rule,
            drgs=tuple(drg_codes),
        )
    return adrgs


def _load_mdcs(doc: dict, file: str, env: CompileEnv, adrgs: Mapping[str, Adrg]) -> tuple[Mdc, ...]:
    mdcs: list[Mdc] = []
    seen: set[str] = set()
    for i, item in enumerate(_entries(doc, "mdcs", file)):
        code = _code_of(item, file, "MDC", i)
        where = f"{file}: MDC {code}"
        if code in seen:
            raise SchemeError(f"{where}: defined twice")
        seen.add(code)
        if "entry" not in item:
            raise SchemeError(f"{where}: missing field 'entry'")
        entry = parse_rule(item["entry"], env, f"{where} entry")
        adrg_codes = _field(item, "adrgs", list, where)
        for a in adrg_codes:
            if not isinstance(a, str) or a not in adrgs:
                raise SchemeError(f"{where}: ADRG {a} is referenced but not defined in adrg.json")
            if adrgs[a].mdc != code:
                raise SchemeError(f"{where}: ADRG {a} belongs to {adrgs[a].mdc} in adrg.json")
        regions = []
        for r in item.get("regions", []) or []:
            if not isinstance(r, dict) or not isinstance(r.get("list"), str):
                raise SchemeError(f"{where}: regions entries must be {{'list': id, 'name': ...}}")
            if r["list"] not in env.lists:
                raise SchemeError(f"{where} regions: unknown list id {r['list']!r}")
            regions.append((r["list"], str(r.get("name", r["list"]))))
        ambiguous = None
        amb = item.get("ambiguous")
        if amb is not None:
            aw = f"{where} ambiguous"
            if not isinstance(amb, dict):
                raise SchemeError(f"{aw}: must be an object")
            pos = _field(amb, "position", int, aw)
            if not 0 <= pos <= len(adrg_codes):
                raise SchemeError(f"{aw}: position {pos} outside 0..{len(adrg_codes)}")
            ambiguous = Ambiguous(
                enabled=_field(amb, "enabled", bool, aw),
                position=pos,
                rule=parse_rule(amb.get("rule", True), env, f"{aw} rule"),
                drg=_field(amb, "drg", str, aw),
            )
        mdcs.append(
            Mdc(
                code=code,
                name=_field(item, "name", str, where),
                entry=entry,
                adrgs=tuple(adrg_codes),
                regions=tuple(regions),
                ambiguous=ambiguous,
            )
        )
    # Every ADRG must be reachable from exactly the MDC it names.
    listed = {a for m in mdcs for a in m.adrgs}
    for code, a in adrgs.items():
        if code not in listed:
            raise SchemeError(f"{file}: ADRG {code} (MDC {a.mdc}) is defined but no MDC lists it")
    return tuple(mdcs)


def _load_evaluation(block: Any, file: str) -> Evaluation:
    if block is None:
        return Evaluation()
    where = f"{file}: evaluation"
    if not isinstance(block, dict):
        raise SchemeError(f"{where}: must be an object")
    unknown = set(block) - {"validation", "missing_numbers", "mapped_empty_codes"}
    if unknown:
        raise SchemeError(f"{where}: unknown option(s) {sorted(unknown)}")
    validation = block.get("validation", list(DEFAULT_VALIDATION))
    if not isinstance(validation, list):
        raise SchemeError(f"{where}: validation must be a list of check names")
    for name in validation:
        if name not in CHECKS:
            raise SchemeError(
                f"{where}: unknown validation check {name!r} (known: {', '.join(CHECKS)})"
            )
    missing = block.get("missing_numbers")
    missing = "null" if missing is None else missing
    if missing not in ("null", "zero"):
        raise SchemeError(f"{where}: missing_numbers must be null or 'zero', got {missing!r}")
    empty = block.get("mapped_empty_codes", "drop")
    if empty not in ("drop", "keep"):
        raise SchemeError(f"{where}: mapped_empty_codes must be 'drop' or 'keep', got {empty!r}")
    return Evaluation(tuple(validation), missing, empty)
