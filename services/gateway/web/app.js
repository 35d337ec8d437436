// DRG/DIP 支付监测看板: the dashboard's views, drawn from the gateway's /api/v1 routes.
// Signed in by the session cookie (HttpOnly: this script never sees it); no token is kept here.
// Every text from the API is put in with textContent, never as HTML.
"use strict";

const state = { who: null, period: null, nav: 0 };  // nav: which navigation the page on screen belongs to

// ------------------------------------------------------------------ small helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// A request of a page the user has already left: its answer must not draw over the page now shown.
class Stale extends Error {}

// A fallback for a request a page can do without; a page left meanwhile still stops.
const unlessStale = (fallback) => (e) => { if (e instanceof Stale) throw e; return fallback; };

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error && body.error.code;
  }
}

async function api(path, params) {
  const nav = state.nav;
  const query = params ? "?" + new URLSearchParams(
    Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== "")) : "";
  const r = await fetch(path + query, { credentials: "same-origin", headers: { accept: "application/json" } });
  const body = await r.json().catch(() => null);
  if (nav !== state.nav) throw new Stale();
  if (r.status === 401) { showSignIn("登录已失效，请重新登录"); throw new ApiError(401, body); }
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}

const num = (v) => (v === null || v === undefined || v === "" ? null : Number(v));
function fmt(v, kind) {
  const n = num(v);
  if (n === null || Number.isNaN(n)) return "—";
  switch (kind) {
    case "pct": return (n * 100).toFixed(2) + "%";
    case "yuan": return "¥" + n.toLocaleString("zh-CN", { maximumFractionDigits: 2 });
    case "int": return Math.round(n).toLocaleString("zh-CN");
    case "days": return n.toFixed(1) + " 天";
    default: return n.toLocaleString("zh-CN", { maximumFractionDigits: 4 });
  }
}

const main = () => document.getElementById("main");
function page(title, ...children) {
  const m = main();
  disposeCharts();
  m.replaceChildren(h("h2", {}, title), ...children.filter((c) => c !== null && c !== undefined));
}
function failure(e) {
  return h("p", { class: "error" }, e instanceof ApiError ? `${e.message}（${e.code || e.status}）` : String(e));
}
function table(columns, rows, empty = "暂无数据") {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.kind && c.kind !== "text" ? "num" : null }, c.label)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, columns.map((c) => {
      const v = c.value ? c.value(r) : r[c.key];
      return h("td", { class: c.kind && c.kind !== "text" ? "num" : null },
        v instanceof Node ? v : (c.kind && c.kind !== "text" ? fmt(v, c.kind) : (v ?? "—")));
    })))));
}
const link = (href, text) => h("a", { href }, text);

// ------------------------------------------------------------------ charts (Apache ECharts, served locally)

let charts = [];
function disposeCharts() { charts.forEach((c) => c.dispose()); charts = []; }
function chartsAvailable() { return typeof window.echarts !== "undefined"; }

// A chart card; `values` are the numbers drawn, kept on the element so that they can be checked
// against the API's answer.
function chart(title, option, values) {
  const box = h("div", { class: "chart", "data-chart": title });
  const card = h("div", { class: "card" }, h("h3", {}, title), box);
  if (!chartsAvailable()) {
    box.replaceChildren(h("p", { class: "empty" }, "图表库未安装：在服务器上运行 bash scripts/install-web.sh（或 make setup）后刷新本页。"));
    return card;
  }
  box.dataset.values = JSON.stringify(values ?? null);
  requestAnimationFrame(() => {
    const c = window.echarts.init(box, null, { renderer: "svg" });
    c.setOption(Object.assign({ animation: false, grid: { left: 56, right: 24, top: 36, bottom: 48 },
      tooltip: { trigger: "axis" } }, option));
    charts.push(c);
    box.dataset.rendered = "true";
  });
  return card;
}
window.addEventListener("resize", () => charts.forEach((c) => c.resize()));

function barChart(title, labels, series, opts = {}) {
  return chart(title, {
    legend: series.length > 1 ? { top: 0 } : undefined,
    xAxis: { type: "category", data: labels, axisLabel: { rotate: labels.length > 8 ? 35 : 0 } },
    yAxis: { type: "value" },
    series: series.map((s) => ({ type: opts.line ? "line" : "bar", name: s.name, data: s.data, smooth: true })),
  }, series.map((s) => s.data));
}

// ------------------------------------------------------------------ periods

function previousPeriod(p) {
  let m;
  if ((m = /^(\d{4})-(\d{2})$/.exec(p))) {
    const y = +m[1], mo = +m[2];
    return mo === 1 ? `${y - 1}-12` : `${y}-${String(mo - 1).padStart(2, "0")}`;
  }
  if ((m = /^(\d{4})Q([1-4])$/.exec(p))) return +m[2] === 1 ? `${+m[1] - 1}Q4` : `${m[1]}Q${+m[2] - 1}`;
  if ((m = /^(\d{4})$/.exec(p))) return String(+m[1] - 1);
  return null;
}
const yearOf = (p) => (p || "").slice(0, 4);

async function defaultPeriod() {
  // the latest month the region has lists for (list quality is kept per hospital and month)
  try {
    const q = await api("/api/v1/quality");
    const months = (q.scores || []).map((s) => s.month).filter(Boolean).sort();
    if (months.length) return months[months.length - 1];
  } catch (e) { /* fall back to this month */ }
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}`;
}

// ------------------------------------------------------------------ indicators (GET /api/v1/indicators)

const INDICATOR_FIELDS = [
  { key: "cases", label: "出院病例数", kind: "int" },
  { key: "grouping_rate", label: "入组率", kind: "pct" },
  { key: "coverage_rate", label: "病组覆盖率", kind: "pct" },
  { key: "cmi", label: "CMI", kind: "num" },
  { key: "cost_index", label: "费用消耗指数", kind: "num" },
  { key: "time_index", label: "时间消耗指数", kind: "num" },
  { key: "average_cost", label: "次均费用", kind: "yuan" },
  { key: "average_los", label: "平均住院日", kind: "days" },
  { key: "self_pay_ratio", label: "自费比例", kind: "pct" },
  { key: "high_outlier_share", label: "高倍率占比", kind: "pct" },
  { key: "low_outlier_share", label: "低倍率占比", kind: "pct" },
  { key: "special_case_share", label: "特例单议占比", kind: "pct" },
  { key: "near_threshold_share", label: "临界区占比", kind: "pct" },
  { key: "readmission_rate_15", label: "15天再入院率", kind: "pct" },
  { key: "flagged_share", label: "疑点病例占比", kind: "pct" },
  { key: "payment_sum", label: "DRG/DIP 支付", kind: "yuan" },
  { key: "surplus", label: "盈亏（支付−项目费用）", kind: "yuan" },
];

async function indicators(params) {
  try {
    return await api("/api/v1/indicators", params);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404 && e.code !== "HOSPITAL_NOT_FOUND") return null;
    throw e;
  }
}
const NO_INDICATORS = () => h("p", { class: "empty" }, "指标服务尚未启用（GET /api/v1/indicators）。");

// ------------------------------------------------------------------ views

async function overview() {
  const p = state.period, prev = previousPeriod(p);
  const [summary, now, before] = await Promise.all([
    api("/api/v1/summary"), indicators({ period: p, by: "hospital" }), prev ? indicators({ period: prev, by: "hospital" }) : null]);
  const cards = h("div", { class: "kpis", id: "kpis" });
  const total = now && now.region_total;
  const last = before && before.region_total;
  const kpi = (label, value, kind, previous) => {
    let change = "环比 —", cls = "change";
    const a = num(value), b = num(previous);
    if (a !== null && b !== null && b !== 0) {
      const pct = ((a - b) / Math.abs(b)) * 100;
      change = `环比 ${pct >= 0 ? "+" : ""}${pct.toFixed(1)}%`;
      cls += pct > 0 ? " up" : pct < 0 ? " down" : "";
    }
    return h("div", { class: "kpi", "data-kpi": label }, h("div", { class: "label" }, label),
      h("div", { class: "value" }, fmt(value, kind)), h("div", { class: cls }, change));
  };
  if (total) {
    for (const f of INDICATOR_FIELDS) if (f.key in total) cards.append(kpi(f.label, total[f.key], f.kind, last && last[f.key]));
  } else {
    cards.append(kpi("病例总数", summary.cases, "int", null));
  }
  const statuses = Object.entries(summary.by_status || {});
  const STATUS = { received: "已接收", grouped: "已分组", priced: "已计价", reviewed: "已审核", withdrawn: "已撤回" };
  const charts = h("div", { class: "charts" },
    barChart("病例处理状态", statuses.map(([s]) => STATUS[s] || s), [{ name: "病例数", data: statuses.map(([, n]) => n) }]));
  if (now && now.rows && now.rows.length) {
    const rows = now.rows.slice().sort((a, b) => num(b.cases) - num(a.cases)).slice(0, 15);
    charts.append(barChart("各医院病例数", rows.map((r) => r.key),
      [{ name: "病例数", data: rows.map((r) => num(r.cases)) }]));
  }
  page(`总览 · ${p}` + (state.who.hospital_code ? ` · ${state.who.hospital_code}` : " · 全区"),
    total ? null : NO_INDICATORS(), cards, charts);
  if (state.who.is_bureau) overviewFeedback(cards);  // 意见反馈 figures, added when they arrive
}

async function trend() {
  const year = yearOf(state.period);
  const data = await indicators({ period: year, by: "month" });
  if (!data) return page(`趋势 · ${year}`, NO_INDICATORS());
  const rows = (data.rows || []).slice().sort((a, b) => String(a.key).localeCompare(String(b.key)));
  const months = rows.map((r) => r.key);
  const series = (key, name) => ({ name, data: rows.map((r) => num(r[key])) });
  page(`趋势 · ${year}`, h("div", { class: "charts" },
    barChart("月度出院病例数", months, [series("cases", "病例数")], { line: true }),
    barChart("月度 CMI", months, [series("cmi", "CMI")], { line: true }),
    barChart("次均费用（元）", months, [series("average_cost", "次均费用")], { line: true }),
    barChart("入组率", months, [series("grouping_rate", "入组率")], { line: true })));
}

const LEVELS = { 1: "一级", 2: "二级", 3: "三级" };
async function compare() {
  const p = state.period;
  const [byLevel, ...perLevel] = await Promise.all([indicators({ period: p, by: "level" }),
    ...[3, 2, 1].map((level) => indicators({ period: p, by: "hospital", level }))]);
  if (!byLevel) return page(`医院对比 · ${p}`, NO_INDICATORS());
  const levels = [3, 2, 1].map((level, i) => ({ level, rows: ((perLevel[i] || {}).rows || []).filter((r) => num(r.cases) > 0) }))
    .filter((l) => l.rows.length);
  const cards = levels.map(({ level, rows }) => barChart(`${LEVELS[level]}医院：CMI 与消耗指数`, rows.map((r) => r.key), [
    { name: "CMI", data: rows.map((r) => num(r.cmi)) }, { name: "费用消耗指数", data: rows.map((r) => num(r.cost_index)) },
    { name: "时间消耗指数", data: rows.map((r) => num(r.time_index)) }]));
  const all = levels.flatMap(({ level, rows }) => rows.map((r) => ({ ...r, level })));
  page(`医院对比 · ${p}`, h("div", { class: "charts" }, cards),
    h("h3", {}, "按医院等级（数据工作组季度口径）"),
    table([{ label: "等级", value: (r) => LEVELS[r.key] || r.key }, { key: "cases", label: "病例数", kind: "int" },
      { key: "average_los", label: "平均住院日", kind: "days" }, { key: "average_cost", label: "次均费用", kind: "yuan" },
      { key: "self_pay_ratio", label: "自费比例", kind: "pct" }, { key: "grouping_rate", label: "入组率", kind: "pct" },
      { key: "cmi", label: "CMI", kind: "num" }], byLevel.rows || []),
    h("h3", {}, "各医院"),
    table([{ label: "医院", value: (r) => link(`#/drill/${encodeURIComponent(r.key)}`, r.key) },
      { label: "等级", value: (r) => LEVELS[r.level] || r.level },
      ...INDICATOR_FIELDS.filter((f) => all.some((r) => f.key in r))], all));
}

async function groups() {
  const p = state.period;
  const data = await indicators({ period: p, by: "group", hospital: state.who.hospital_code });
  if (!data) return page(`病组分析 · ${p}`, NO_INDICATORS());
  const rows = (data.rows || []).filter((r) => num(r.cases) > 0);
  const perCase = (r) => (num(r.surplus) ?? 0) / num(r.cases);
  const points = rows.map((r) => [num(r.cases), +perCase(r).toFixed(2), num(r.average_cost) ?? 0, r.key]);
  const maxCost = Math.max(1, ...points.map((q) => q[2]));
  const bubble = chart("病组气泡图：病例数 × 例均盈亏（气泡大小 = 次均费用）", {
    tooltip: { trigger: "item", formatter: (q) => `${q.data[3]}<br>病例数 ${q.data[0]}<br>例均盈亏 ¥${q.data[1]}<br>次均费用 ¥${q.data[2]}` },
    xAxis: { type: "value", name: "病例数", scale: true }, yAxis: { type: "value", name: "例均盈亏（元）" },
    series: [{ type: "scatter", data: points, symbolSize: (d) => 8 + 40 * Math.sqrt(d[2] / maxCost),
      itemStyle: { color: (q) => (q.data[1] >= 0 ? "#2e86c1" : "#c0392b"), opacity: 0.7 } }],
  }, points);
  const top = rows.slice().sort((a, b) => num(b.cases) - num(a.cases)).slice(0, 20);
  page(`病组分析 · ${p}`, h("div", { class: "charts" }, bubble,
    barChart("病例数最多的 20 个病组", top.map((r) => r.key), [{ name: "病例数", data: top.map((r) => num(r.cases)) }])),
    h("h3", {}, "病组明细"),
    table([{ key: "key", label: "病组" }, { key: "cases", label: "病例数", kind: "int" },
      { key: "average_cost", label: "次均费用", kind: "yuan" }, { label: "例均盈亏", kind: "yuan", value: perCase },
      { key: "surplus", label: "盈亏合计", kind: "yuan" }], rows.slice().sort((a, b) => num(b.cases) - num(a.cases))));
}

async function quality() {
  const q = await api("/api/v1/quality", { hospital: state.who.hospital_code });
  const scores = q.scores || [];
  const month = scores.map((s) => s.month).sort().pop();
  const latest = scores.filter((s) => s.month === month);
  page(`清单质量 · ${month || ""}`, h("div", { class: "charts" },
    barChart(`${month || ""} 各医院清单质量`, latest.map((s) => s.hospital), [
      { name: "时效性", data: latest.map((s) => num(s.timeliness)) }, { name: "完整度", data: latest.map((s) => num(s.completeness)) },
      { name: "合格率", data: latest.map((s) => num(s.pass_rate)) }, { name: "准确性", data: latest.map((s) => num(s.accuracy)) }])),
  h("h3", {}, "明细（医院 × 月份）"),
  table([{ key: "hospital", label: "医院" }, { key: "month", label: "月份" }, { key: "lists", label: "清单数", kind: "int" },
    { key: "timeliness", label: "时效性", kind: "pct" }, { key: "completeness", label: "完整度", kind: "pct" },
    { key: "pass_rate", label: "合格率", kind: "pct" }, { key: "accuracy", label: "准确性", kind: "pct" }],
  scores.slice().sort((a, b) => (b.month + b.hospital).localeCompare(a.month + a.hospital))));
}

const RULES = { SPLIT_ADMISSION: "分解住院", UPCODING_SECONDARY: "高套分组（次要诊断）", LOW_STANDARD_ADMISSION: "低标准入院",
  PRIMARY_CARE_AT_TERTIARY: "基层病种在三级医院", COST_SHIFTING: "费用转嫁" };
const ruleName = (r) => (RULES[r] ? `${RULES[r]}（${r}）` : r);
const SEVERITY = { high: "高", medium: "中", low: "低" };
const FLAG_STATUS = { open: "待申诉", answered: "已申诉", confirmed: "已确认", dismissed: "已排除", superseded: "已替代" };
function flagTable(flags) {
  return table([{ key: "id", label: "编号" }, { label: "规则", value: (f) => ruleName(f.rule) },
    { label: "级别", value: (f) => (f.level === "hospital" ? "医院" : "病例") },
    { key: "hospital_code", label: "医院" },
    { label: "病例", value: (f) => (f.case_id ? link(`#/case/${encodeURIComponent(f.case_id)}`, f.case_id) : "—") },
    { label: "状态", value: (f) => h("span", { class: "pill" + (f.status === "confirmed" ? " warn" : "") }, FLAG_STATUS[f.status] || f.status) },
    { key: "message", label: "说明" }], flags, "没有监测疑点");
}

async function flags() {
  const p = state.period;
  // flagged cases per rule over the period, from the indicators (every case, not only a page of flags)
  const [data, perRule] = await Promise.all([api("/api/v1/flags", { limit: 200 }),
    indicators({ period: p, by: "rule", hospital: state.who.hospital_code })]);
  const list = data.flags || [];
  const rows = ((perRule && perRule.rows) || []).slice().sort((a, b) => String(a.key).localeCompare(String(b.key)));
  page(`监测疑点 · ${p}`, rows.length ? h("div", { class: "charts" },
    barChart(`${p} 各规则疑点病例数`, rows.map((r) => RULES[r.key] || r.key),
      [{ name: "疑点病例数", data: rows.map((r) => num(r.flagged)) }])) : null,
  h("h3", {}, "疑点列表（最近 200 条）"), flagTable(list));
}

// ------------------------------------------------------------------ budget execution (GET /api/v1/indicators/budget)

async function budget() {
  const year = yearOf(state.period);
  const regions = await indicators({ period: year, by: "region" });
  const names = ((regions && regions.rows) || []).map((r) => r.key).filter(Boolean).sort();
  if (!names.length) return page(`预算执行 · ${year}`, h("p", { class: "empty" }, `${year} 年没有病例`));
  const answers = await Promise.all(names.map((region) => api("/api/v1/indicators/budget", { region, year })));
  const sections = answers.map((b) => {
    const months = b.months || [];
    const labels = months.map((m) => m.period);
    let total = 0;
    const cumulative = months.map((m) => +(total += num(m.presettled) || 0).toFixed(2));
    const annual = b.annual || {};
    const figures = chart(`${b.region} · 每月预结算与基金应付（元）`, {
      legend: { top: 0 },
      xAxis: { type: "category", data: labels },
      yAxis: [{ type: "value", name: "元" }, { type: "value", name: "点值", scale: true }],
      series: [
        { type: "bar", name: "预结算（已付）", data: months.map((m) => num(m.presettled)) },
        { type: "bar", name: "基金应付", data: months.map((m) => num(m.fund_due)) },
        { type: "line", name: "累计已付", data: cumulative },
        { type: "line", name: "点值", yAxisIndex: 1, data: months.map((m) => num(m.provisional_point_value)) }],
    }, { months: labels, presettled: months.map((m) => num(m.presettled)), fund_due: months.map((m) => num(m.fund_due)),
      point_value: months.map((m) => num(m.provisional_point_value)) });
    return h("div", { class: "budget", "data-region": b.region },
      h("h3", {}, `${b.region} · ${year} 年`),
      h("div", { class: "charts" }, figures),
      table([{ key: "period", label: "月份" }, { key: "hospitals", label: "医院数", kind: "int" },
        { key: "cases", label: "病例数", kind: "int" }, { key: "presettled", label: "预结算（已付）", kind: "yuan" },
        { key: "fund_due", label: "基金应付", kind: "yuan" }, { key: "provisional_point_value", label: "预结算点值", kind: "num" }],
      months, "本年度尚未预结算"),
      h("p", { class: "empty" }, `年终清算：${annual.hospitals ? `${annual.hospitals} 家医院，清算 ${fmt(annual.cleared, "yuan")}，`
        + `结余 ${fmt(annual.balance, "yuan")}，清算点值 ${fmt(annual.point_value)}` : "尚未清算"}`));
  });
  page(`预算执行 · ${year}`, ...sections);
}

const SC_STATUS = { pending: "待评议", approved: "已通过", rejected: "未通过", appealed: "申诉中" };
async function special() {
  const data = await api("/api/v1/special-cases", { limit: 200 });
  const apps = data.applications || [];
  page("特例单议", h("h3", {}, "申请队列"),
    table([{ key: "id", label: "编号" }, { key: "hospital_code", label: "医院" },
      { label: "病例", value: (a) => (a.case_id ? link(`#/case/${encodeURIComponent(a.case_id)}`, a.case_id) : "—") },
      { key: "reason", label: "理由" }, { key: "period", label: "季度" },
      { label: "状态", value: (a) => SC_STATUS[a.status] || a.status }], apps, "没有特例单议申请"));
}

// ------------------------------------------------------------------ drill-down: region → hospital → group → case

function crumbs(...parts) {
  return h("div", { class: "crumbs" }, parts.flatMap((p, i) => [i ? " › " : "", p[1] ? link(p[1], p[0]) : p[0]]));
}

async function drillRegion() {
  if (state.who.hospital_code) { location.hash = `#/drill/${encodeURIComponent(state.who.hospital_code)}`; return; }
  const year = yearOf(state.period);  // the drill-down goes by the whole year of the period
  const data = await indicators({ period: year, by: "hospital" });
  let rows;
  if (data) rows = data.rows || [];
  else {
    const q = await api("/api/v1/quality");  // the hospitals that sent lists
    rows = [...new Set((q.scores || []).map((s) => s.hospital))].sort().map((key) => ({ key }));
  }
  page(`逐级钻取 · 全区 · ${year} 年`, crumbs(["全区"]),
    table([{ label: "医院", value: (r) => link(`#/drill/${encodeURIComponent(r.key)}`, r.key) },
      ...INDICATOR_FIELDS.filter((f) => rows.some((r) => f.key in r)).slice(0, 7)], rows));
}

async function casesTable(params) {
  const data = await api("/api/v1/cases", params);
  return h("div", { id: "cases" }, table([{ label: "病例", value: (c) => link(`#/case/${encodeURIComponent(c.case_id)}`, c.case_id) },
    { key: "hospital_code", label: "医院" }, { key: "status", label: "状态" }, { key: "list_version", label: "版本" },
    { label: "病组", value: (c) => c.group_code || "—" },
    { label: "疑点", value: (c) => (c.flagged ? h("span", { class: "pill warn" }, "有疑点") : "—") }], data.cases || [],
  "没有病例"));
}

async function drillHospital(hospital) {
  const year = yearOf(state.period);
  const data = await indicators({ period: year, by: "group", hospital });
  const groupRows = data ? data.rows || [] : [];
  const region = state.who.hospital_code ? [] : [["全区", "#/drill"]];
  page(`逐级钻取 · ${hospital}`, crumbs(...region, [hospital]),
    data ? h("div", {}, h("h3", {}, `${year} 年各病组`),
      table([{ label: "病组", value: (r) => link(`#/drill/${encodeURIComponent(hospital)}/${encodeURIComponent(r.key)}`, r.key) },
        { key: "cases", label: "病例数", kind: "int" }, { key: "average_cost", label: "次均费用", kind: "yuan" },
        { key: "surplus", label: "盈亏", kind: "yuan" }], groupRows)) : NO_INDICATORS(),
    h("h3", {}, "病例（前 50 例）"), await casesTable({ hospital, limit: 50 }));
}

async function drillGroup(hospital, group) {
  const region = state.who.hospital_code ? [] : [["全区", "#/drill"]];
  let cases;
  try { cases = await casesTable({ hospital, group, limit: 100 }); } catch (e) { cases = failure(e); }
  page(`逐级钻取 · ${hospital} · ${group}`,
    crumbs(...region, [hospital, `#/drill/${encodeURIComponent(hospital)}`], [group]), cases);
}

// ------------------------------------------------------------------ one case

const PRICE_LABELS = [
  ["case_type", "病例类型"], ["method", "付费方式"], ["policy_id", "政策"], ["policy_version", "政策版本"],
  ["hospital_level", "医院等级"], ["rw", "权重 RW"], ["base_rate", "费率/基准"], ["coefficient", "调节系数"],
  ["payment_standard", "支付标准"], ["total_cost", "总费用"], ["patient_share", "个人负担"],
  ["group_mean_cost", "病组例均费用"], ["high_threshold", "高倍率界值"], ["low_threshold", "低倍率界值"],
  ["outlier_extra", "极值追加"], ["points", "点数"], ["point_value", "点值"], ["add_on", "加成"],
  ["payment", "支付金额"], ["fund_payment", "统筹基金支付"], ["total_payment", "合计支付"]];
const CASE_TYPES = { normal: "正常病例", high_outlier: "高倍率病例", low_outlier: "低倍率病例", special: "特例单议" };

async function oneCase(caseId) {
  const c = await api(`/api/v1/cases/${encodeURIComponent(caseId)}`);
  // the full grouping trace is recomputed by the grouper on request (none for an ungrouped case)
  const grouping = c.grouped ? await api(`/api/v1/cases/${encodeURIComponent(caseId)}/grouping`).catch(unlessStale(null)) : null;
  const g = c.grouped || {}, p = c.priced || {}, b = p.breakdown || {};
  const step = (label, code, name) => h("div", { class: "step" }, h("b", {}, label), code || "—", name ? ` ${name}` : "");
  const dip = g.dip && typeof g.dip === "object" ? g.dip : null;
  const trace = h("div", { class: "trace", id: "trace" },
    step("分组方案", g.scheme_id), h("span", { class: "arrow" }, "→"),
    step("MDC", g.mdc), h("span", { class: "arrow" }, "→"),
    step("ADRG", g.adrg), h("span", { class: "arrow" }, "→"),
    step("DRG", g.drg, g.drg_name), dip ? h("span", { class: "arrow" }, "·") : null,
    dip ? step("DIP 病种", dip.group, (dip.trace || []).join(" → ")) : null,
    step("结果", g.status), g.cc_lift ? step("并发症调整", JSON.stringify(g.cc_lift)) : null);
  const priceRows = PRICE_LABELS.filter(([k]) => b[k] !== undefined && b[k] !== null && b[k] !== "")
    .map(([k, label]) => ({ label, value: k === "case_type" ? CASE_TYPES[b[k]] || b[k] : b[k] }));
  const flagsOf = (c.reviewed && c.reviewed.flags) || [];
  const r = c.received || {};
  const hospitalCrumb = [c.hospital_code, `#/drill/${encodeURIComponent(c.hospital_code)}`];
  page(`病例 ${c.case_id}`,
    crumbs(...(state.who.hospital_code ? [] : [["全区", "#/drill"]]), hospitalCrumb,
      ...(g.drg ? [[g.drg, `#/drill/${encodeURIComponent(c.hospital_code)}/${encodeURIComponent(g.drg)}`]] : []), [c.case_id]),
    h("div", { class: "two" },
      h("div", { class: "card" }, h("h3", {}, "病例信息"), table([{ key: "label", label: "项目" }, { key: "value", label: "内容" }], [
        { label: "医院", value: c.hospital_code }, { label: "状态", value: c.status }, { label: "清单版本", value: c.list_version },
        { label: "科室", value: r.dept }, { label: "住院天数", value: r.los }, { label: "主要诊断", value: (r.diagnoses || [])[0] },
        { label: "其他诊断", value: (r.diagnoses || []).slice(1).join("、") || "—" },
        { label: "手术操作", value: (r.procedures || []).join("、") || "—" }])),
      h("div", { class: "card" }, h("h3", {}, "分组路径"), trace,
        grouping && (grouping.explanation || []).length
          ? h("ol", { class: "explanation", id: "grouping-explanation" }, ...grouping.explanation.map((line) => h("li", {}, line)))
          : null,
        h("h3", {}, "价格明细"), h("div", { id: "price" }, table([{ key: "label", label: "项目" },
          { key: "value", label: "金额/取值" }], priceRows, "尚未计价")),
        (b.notes || []).length ? h("p", { class: "empty" }, (b.notes || []).join("；")) : null)),
    h("h3", {}, "监测疑点"), h("div", { id: "case-flags" }, table([{ label: "规则", value: (f) => ruleName(f.rule) },
      { label: "级别", value: (f) => SEVERITY[f.severity] || f.severity }, { key: "message", label: "说明" },
      { label: "相关病例", value: (f) => (f.related_case_id ? link(`#/case/${encodeURIComponent(f.related_case_id)}`, f.related_case_id) : "—") }], flagsOf, "本病例没有疑点")),
    h("h3", {}, "处理时间线"), table([{ key: "event_type", label: "事件" }, { key: "producer", label: "环节" },
      { key: "list_version", label: "版本" }, { key: "occurred_at", label: "时间" }], c.timeline || []));
}

// ------------------------------------------------------------------ shared by the pages below

// "2024-10-08T02:00:00+00:00" → "2024-10-08 10:00" (China Standard Time)
function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const p = Object.fromEntries(new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Shanghai", year: "numeric",
    month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" })
    .formatToParts(d).map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}`;
}
const pill = (text, kind) => h("span", { class: "pill" + (kind ? ` ${kind}` : "") }, text);
const kpiCard = (label, value) => h("div", { class: "kpi", "data-kpi": label }, h("div", { class: "label" }, label),
  h("div", { class: "value" }, value));
const levelName = (l) => LEVELS[l] || "等级未知";

// the regions of the signed-in role's cases in a year (a hospital: its own region)
async function regionsOf(year) {
  const data = await indicators({ period: year, by: "region" });
  return ((data && data.rows) || []).map((r) => r.key).filter(Boolean).sort();
}
function monthsOf(period) {
  let m;
  if ((m = /^(\d{4})-(\d{2})$/.exec(period))) return [period];
  const year = period.slice(0, 4);
  const all = Array.from({ length: 12 }, (_, i) => `${year}-${String(i + 1).padStart(2, "0")}`);
  if ((m = /^\d{4}Q([1-4])$/.exec(period))) return all.slice((+m[1] - 1) * 3, +m[1] * 3);
  return all;
}
function chooser(id, options, value, onchange) {
  return h("select", { id, onchange: (ev) => onchange(ev.target.value) },
    options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
}

// ------------------------------------------------------------------ performance evaluation (GET /api/v1/evaluations)

// Per region and period the evaluation that counts: the latest adopted one, else the latest computed.
function evaluationsInForce(list) {
  const by = new Map();
  for (const e of list) {
    const key = `${e.region}|${e.period}`, best = by.get(key);
    const rank = (x) => [x.adopted_at ? 1 : 0, x.evaluation_id];
    if (!best || rank(e)[0] > rank(best)[0] || (rank(e)[0] === rank(best)[0] && e.evaluation_id > best.evaluation_id)) by.set(key, e);
  }
  return [...by.values()];
}
const byLevelThenCode = (a, b) => b.level - a.level || String(a.hospital_code).localeCompare(String(b.hospital_code));

function scoreChart(title, rows) {
  const labels = rows.map((r) => r.hospital_code);
  const levels = [...new Set(rows.map((r) => r.level))].sort((a, b) => b - a);
  return chart(title, {
    legend: { top: 0 },
    xAxis: { type: "category", data: labels, axisLabel: { rotate: labels.length > 8 ? 35 : 0 } },
    yAxis: { type: "value", name: "得分", max: 100 },
    series: levels.map((l) => ({ type: "bar", name: levelName(l), stack: "score", barMaxWidth: 48,
      data: rows.map((r) => (r.level === l ? num(r.score) : null)) })),
  }, { hospitals: labels, levels: rows.map((r) => r.level), scores: rows.map((r) => num(r.score)) });
}

function evaluationSection(e) {
  const rows = (e.hospitals || []).slice().sort(byLevelThenCode);
  const yearly = /^\d{4}$/.test(e.period);
  const status = e.adopted_at ? pill(`已采纳 ${when(e.adopted_at)}`, "ok") : pill("已计算，未采纳");
  const head = h("p", { class: "meta" }, `评价 #${e.evaluation_id} · 参数版本 ${e.parameters_version} · 计算于 ${when(e.evaluated_at)} · `,
    status, yearly ? " · 年度评价采纳后，按得分返还质量保证金（年终清算）" : " · 季度评价（质量保证金按年度评价返还）");
  const share = { label: yearly ? "质量保证金返还比例" : "质量保证金返还比例（参考）", kind: "pct", key: "deposit_return_share" };
  if (!state.who.is_bureau) {
    const own = rows[0];
    if (!own) return h("div", { class: "evaluation", "data-region": e.region }, h("h3", {}, `${e.region} · ${e.period}`), head,
      h("p", { class: "empty" }, "本次评价没有本院的得分"));
    const comps = own.components || [];
    return h("div", { class: "evaluation", "data-region": e.region }, h("h3", {}, `${e.region} · ${e.period} · ${own.hospital_code}`), head,
      h("div", { class: "kpis" }, kpiCard("综合得分", own.score), kpiCard("医院等级", levelName(own.level)),
        kpiCard(share.label, fmt(own.deposit_return_share, "pct"))),
      h("div", { class: "charts" }, barChart("各项指标得分与满分", comps.map((c) => c.label), [
        { name: "得分", data: comps.map((c) => num(c.points)) }, { name: "满分（权重）", data: comps.map((c) => num(c.weight)) }])),
      h("div", { id: "evaluation-components" }, table([{ key: "label", label: "指标" }, { key: "component", label: "代码" },
        { key: "value", label: "取值", kind: "num" }, { key: "weight", label: "满分（权重）", kind: "num" },
        { label: "得分", value: (c) => (c.points === null ? "未计（无数据）" : c.points) }], comps)));
  }
  const names = (rows[0] && rows[0].components || []).map((c) => [c.component, `${c.label}（${c.weight}分）`]);
  const scores = rows.map((r) => num(r.score));
  const mean = scores.length ? scores.reduce((a, b) => a + b, 0) / scores.length : null;
  return h("div", { class: "evaluation", "data-region": e.region }, h("h3", {}, `${e.region} · ${e.period}`), head,
    h("div", { class: "kpis" }, kpiCard("参评医院", fmt(rows.length, "int")), kpiCard("平均得分", mean === null ? "—" : mean.toFixed(2)),
      kpiCard("全额返还保证金医院", fmt(rows.filter((r) => num(r.deposit_return_share) === 1).length, "int"))),
    h("div", { class: "charts" }, scoreChart(`${e.region} · ${e.period} 各医院绩效得分（按医院等级）`, rows)),
    h("div", { class: "wide", id: "evaluation-table" }, table([{ key: "hospital_code", label: "医院" },
      { label: "等级", value: (r) => levelName(r.level) }, { key: "score", label: "综合得分" }, share,
      ...names.map(([code, label]) => ({ label, kind: "num", value: (r) => {
        const c = (r.components || []).find((x) => x.component === code);
        return c && c.points !== null ? num(c.points) + 0 : null;  // + 0: no "-0"
      } }))], rows)));
}

async function evaluation(chosen) {
  const list = evaluationsInForce((await api("/api/v1/evaluations")).evaluations || []);
  const periods = [...new Set(list.map((e) => e.period))].sort((a, b) => (a.slice(0, 4) + (a[5] || "9")).localeCompare(b.slice(0, 4) + (b[5] || "9")));
  if (!periods.length) return page("绩效评价", h("p", { class: "empty" }, "尚未开展绩效评价（医保局管理员计算季度或年度评价后在此显示）。"));
  const p = state.period, quarter = /^\d{4}-\d{2}$/.test(p) ? `${p.slice(0, 4)}Q${Math.ceil(+p.slice(5, 7) / 3)}` : p;
  const period = [chosen, p, quarter, yearOf(p)].find((x) => x && periods.includes(x)) || periods[periods.length - 1];
  const label = (x) => (/^\d{4}$/.test(x) ? `${x} 年度` : `${x.slice(0, 4)} 年第 ${x.slice(5)} 季度`);
  const sections = list.filter((e) => e.period === period).sort((a, b) => a.region.localeCompare(b.region)).map(evaluationSection);
  page(`绩效评价 · ${label(period)}`, h("div", { class: "toolbar" }, h("label", { for: "evaluation-period" }, "评价期"),
    chooser("evaluation-period", periods.map((x) => [x, label(x)]), period, (v) => evaluation(v))), ...sections);
}

// ------------------------------------------------------------------ settlement timeliness and prepayments

const TIMELINESS = { within: ["按时", "ok"], late: ["逾期结算", "warn"], pending: ["待结算", null], overdue: ["超期未结", "warn"],
  not_declared: ["未申报", null] };
async function timelinessSection(region, month) {
  const t = await api("/api/v1/indicators/timeliness", { region, period: month });
  const c = t.counts || {};
  return h("div", { class: "timeliness", "data-region": region },
    h("h3", {}, `${region} · ${month} 申报至预结算（时限 ${t.limit} 个工作日）`),
    h("div", { class: "kpis" }, kpiCard("医院数", fmt(t.hospitals, "int")), kpiCard("按时", fmt(c.within, "int")),
      kpiCard("逾期结算", fmt(c.late, "int")), kpiCard("待结算", fmt(c.pending, "int")), kpiCard("超期未结", fmt(c.overdue, "int")),
      kpiCard("及时率", fmt(t.timely_rate, "pct"))),
    h("div", { class: "timeliness-rows" }, table([{ key: "hospital_code", label: "医院" },
      { label: "申报时间", value: (r) => when(r.declared_at) }, { label: "预结算时间", value: (r) => when(r.presettled_at) },
      { key: "working_days", label: "工作日", kind: "int" },
      { label: "是否在时限内", value: (r) => (r.within_rule === null ? "—" : r.within_rule ? "是" : "否") },
      { label: "状态", value: (r) => pill(...(TIMELINESS[r.status] || [r.status])) }], t.rows || [], `${month} 没有医院申报或预结算`)));
}

async function prepaymentSection(region, year) {
  const pre = await api("/api/v1/indicators/prepayments", { region, year });
  const rows = pre.rows || [];
  return h("div", { class: "prepayments", "data-region": region }, h("h3", {}, `${region} · ${year} 年预付金`),
    table([{ key: "hospital_code", label: "医院" }, { key: "granted", label: "已拨付", kind: "yuan" },
      { key: "netted", label: "年终清算冲抵", kind: "yuan" }, { key: "outstanding", label: "未冲抵", kind: "yuan" }],
    rows.length ? [...rows, { hospital_code: "合计", ...(pre.total || {}) }] : [], `${year} 年没有预付金`));
}

async function timeliness(chosen) {
  const p = state.period, year = yearOf(p), months = monthsOf(p);
  const month = (chosen && chosen.startsWith(year) ? chosen : null) || months[months.length - 1];
  const regions = await regionsOf(year);
  if (!regions.length) return page(`结算及时性 · ${year}`, h("p", { class: "empty" }, `${year} 年没有病例`));
  const sections = await Promise.all(regions.map((r) => timelinessSection(r, month)));
  const pre = await Promise.all(regions.map((r) => prepaymentSection(r, year)));
  page(`结算及时性 · ${month}`, h("div", { class: "toolbar" }, h("label", { for: "timeliness-month" }, "申报月份"),
    chooser("timeliness-month", monthsOf(year).map((m) => [m, m]), month, (v) => timeliness(v))),
  h("p", { class: "meta" }, "医院按月申报后，医保局应在 20 个工作日内完成预结算（节假日与调休工作日按日历计算）。"),
  ...sections, ...pre);
}

// ------------------------------------------------------------------ feedback channel (GET /api/v1/feedback, /feedback/stats)

const FEEDBACK_CATEGORY = { grouping: "分组", weights: "权重/分值", payment: "支付", rules: "规则", monitoring: "监测",
  "special-cases": "特例单议", data: "数据", other: "其他" };
const FEEDBACK_STATUS = { new: ["新提交", "warn"], triaged: ["已受理", null], answered: ["已答复", "ok"], closed: ["已办结", "ok"] };
function feedbackCards(stats) {
  const s = stats.by_status || {}, d = stats.answer_working_days || {};
  return [kpiCard("意见总数", fmt(stats.total, "int")), kpiCard("待受理", fmt(s.new, "int")),
    kpiCard("处理中", fmt(s.triaged, "int")), kpiCard("已答复", fmt(stats.answered, "int")),
    kpiCard("平均答复用时", d.mean === null || d.mean === undefined ? "—" : `${d.mean} 个工作日`),
    kpiCard("最长答复用时", d.max === null || d.max === undefined ? "—" : `${d.max} 个工作日`)];
}
// the overview's feedback figures (bureau roles), added once they arrive
async function overviewFeedback(into) {
  try {
    const stats = await api("/api/v1/feedback/stats");
    if (into.isConnected) into.append(...feedbackCards(stats).slice(0, 3).map((c) => {
      c.dataset.kpi = `意见反馈·${c.dataset.kpi}`;
      c.querySelector(".label").textContent = `意见反馈 · ${c.querySelector(".label").textContent}`;
      return c;
    }));
  } catch (e) { /* the overview stands without them */ }
}

async function feedback() {
  const [list, stats] = await Promise.all([api("/api/v1/feedback", { limit: 200 }),
    state.who.is_bureau ? api("/api/v1/feedback/stats") : null]);
  const rows = list.feedback || [];
  const cats = stats ? Object.entries(stats.by_category || {}) : [];
  page("意见反馈",
    stats ? h("div", { class: "kpis", id: "feedback-kpis" }, feedbackCards(stats)) : null,
    cats.length ? h("div", { class: "charts" }, barChart("各类别意见数", cats.map(([c]) => FEEDBACK_CATEGORY[c] || c),
      [{ name: "意见数", data: cats.map(([, n]) => n) }])) : null,
    h("h3", {}, state.who.is_bureau ? "意见列表（全部医院，最近 200 条）" : "本院提交的意见"),
    h("div", { id: "feedback-list" }, table([{ key: "id", label: "编号" }, { key: "hospital_code", label: "医院" },
      { label: "类别", value: (f) => FEEDBACK_CATEGORY[f.category] || f.category }, { key: "text", label: "内容" },
      { label: "相关病例", value: (f) => ((f.case_ids || []).length
        ? h("span", {}, f.case_ids.flatMap((c, i) => [i ? "、" : "", link(`#/case/${encodeURIComponent(c)}`, c)])) : "—") },
      { label: "提交时间", value: (f) => when(f.sent_at) },
      { label: "状态", value: (f) => pill(...(FEEDBACK_STATUS[f.status] || [f.status])) },
      { label: "答复", value: (f) => f.answer || "—" }, { label: "答复时间", value: (f) => when(f.answered_at) }], rows, "没有意见反馈")));
}

// ------------------------------------------------------------------ negotiation rounds (GET /api/v1/negotiations…)

const DRAFT_KIND = { policy: "DRG 政策（权重/费率/系数）", "dip-policy": "DIP 政策与目录", "scheme-changeset": "本地分组变更" };
const COMMENT_KIND = { comment: "意见", objection: "异议" };
const OUTCOME = { accepted: ["采纳", "ok"], partly: ["部分采纳", null], rejected: ["不采纳", "warn"] };
function cstToday() { return when(new Date().toISOString()).slice(0, 10); }
function windowState(d) {
  if (d.status === "adopted") return pill(`已采纳${d.adopted_from ? `（${d.adopted_from} 起执行）` : ""}`, "ok");
  const today = cstToday();
  if (today < d.opens) return pill("未开始");
  if (today > d.closes) return pill("意见征集已截止");
  return pill("征求意见中", "warn");
}
const answerCell = (c) => (c.answer ? h("span", {}, pill(...(OUTCOME[c.answer] || [c.answer])), ` ${c.answer_reason || ""}`) : "待答复");

async function negotiation() {
  const drafts = (await api("/api/v1/negotiations")).drafts || [];
  const columns = [{ key: "id", label: "编号" }, { label: "标题", value: (d) => link(`#/negotiation/${d.id}`, d.title) },
    { label: "类型", value: (d) => DRAFT_KIND[d.kind] || d.kind },
    { label: "政策/版本", value: (d) => (d.policy_id ? `${d.policy_id}${d.version ? ` v${d.version}` : ""}` : "—") },
    { label: "意见征集期", value: (d) => `${d.opens} 至 ${d.closes}` }, { key: "items", label: "条目数", kind: "int" },
    { label: "状态", value: windowState }];
  const open = drafts.filter((d) => d.status === "open"), done = drafts.filter((d) => d.status !== "open");
  page("协商谈判", h("h3", {}, "征求意见中的草案"), h("div", { id: "drafts-open" }, table(columns, open, "没有征求意见中的草案")),
    h("h3", {}, "已采纳"), table(columns, done, "尚无已采纳的草案"));
}

async function draftImpact(d) {
  const impact = await api(`/api/v1/negotiations/${d.id}/impact`);
  if (impact.migration !== undefined) {  // a change set: the hospital's cases old group → new group
    const rows = Array.isArray(impact.migration) ? impact.migration : [];
    const keys = rows.length ? Object.keys(rows[0]) : [];
    return h("div", { id: "draft-impact" }, h("h3", {}, "本院病例的分组迁移"),
      table(keys.map((k) => ({ key: k, label: k, kind: typeof rows[0][k] === "number" ? "int" : "text" })), rows, "本院没有受影响的病例"));
  }
  if (!impact.groups) return h("div", { id: "draft-impact" }, h("p", { class: "empty" }, impact.note || "该草案不测算影响"));
  const groups = impact.groups, t = impact.total || {};
  return h("div", { id: "draft-impact" }, h("h3", {}, `本院测算：${impact.cases} 例病例按草案与现行政策分别计价`),
    h("div", { class: "kpis" }, kpiCard("现行政策支付", fmt(t.current_payment, "yuan")), kpiCard("草案支付", fmt(t.draft_payment, "yuan")),
      kpiCard("支付变化", fmt(t.payment_change, "yuan")), kpiCard("草案盈亏", fmt(t.draft_profit_loss, "yuan"))),
    h("div", { class: "charts" }, barChart("各病组支付变化（草案 − 现行，元）", groups.map((g) => g.drg),
      [{ name: "支付变化", data: groups.map((g) => num(g.payment_change)) }])),
    table([{ key: "drg", label: "病组" }, { key: "cases", label: "病例数", kind: "int" },
      { key: "current_payment", label: "现行支付", kind: "yuan" }, { key: "draft_payment", label: "草案支付", kind: "yuan" },
      { key: "payment_change", label: "变化", kind: "yuan" }, { key: "current_profit_loss", label: "现行盈亏", kind: "yuan" },
      { key: "draft_profit_loss", label: "草案盈亏", kind: "yuan" }], groups, "本院没有可测算的病例"));
}

async function negotiationDraft(id) {
  const d = await api(`/api/v1/negotiations/${encodeURIComponent(id)}`);
  const comments = await api(`/api/v1/negotiations/${encodeURIComponent(id)}/comments`);
  const head = [crumbs(["协商谈判", "#/negotiation"], [d.title]),
    h("p", { class: "meta" }, `${DRAFT_KIND[d.kind] || d.kind} · 意见征集期 ${d.opens} 至 ${d.closes} · `, windowState(d))];
  const commentColumns = [{ key: "item", label: "条目" }, { label: "类型", value: (c) => COMMENT_KIND[c.kind] || c.kind },
    { key: "reason", label: "理由" }, { label: "建议值", value: (c) => c.counter_proposal || "—" },
    { label: "提交时间", value: (c) => when(c.commented_at) }, { label: "答复", value: answerCell }];
  const changes = (d.changes || []).length ? [h("h3", {}, "采纳时的修改"), table([{ key: "item", label: "条目" },
    { key: "draft_value", label: "草案值" }, { key: "adopted_value", label: "采纳值" }, { key: "reason", label: "理由" }], d.changes)] : [];
  if (!state.who.is_bureau) {
    return page(`协商谈判 · ${d.title}`, ...head, await draftImpact(d).catch(failure),
      h("h3", {}, "本院的意见与答复"), h("div", { id: "own-comments" }, table(commentColumns, comments.own || [], "本院尚未提交意见")),
      h("h3", {}, "全部意见与答复（匿名）"), table(commentColumns, comments.all || [], "尚无意见"), ...changes);
  }
  const every = comments.comments || [];
  const items = [...new Set(every.map((c) => c.item))].sort();
  const count = (item, kind) => every.filter((c) => c.item === item && c.kind === kind).length;
  page(`协商谈判 · ${d.title}`, ...head,
    h("p", { class: "reports" }, link(`/api/v1/negotiations/${d.id}/report.html`, "查看本轮协商报告（HTML）"), " · ",
      link(`/api/v1/negotiations/${d.id}/report.csv`, "CSV")),
    items.length ? h("div", { class: "charts" }, barChart("各条目意见与异议数", items, [
      { name: "意见", data: items.map((i) => count(i, "comment")) }, { name: "异议", data: items.map((i) => count(i, "objection")) }])) : null,
    h("h3", {}, "各条目的意见与答复"),
    h("div", { id: "item-comments" }, table([commentColumns[0], { key: "hospital_code", label: "医院" }, ...commentColumns.slice(1)],
      every.slice().sort((a, b) => a.item.localeCompare(b.item) || a.id - b.id), "尚无意见")), ...changes);
}

// ------------------------------------------------------------------ reports (HTML pages of /api/v1/reports/…)

// A report's address from its form's filled fields (an empty optional field is left out), kept on
// the form's link: the report opens in a new tab of the same signed-in browser.
function reportForm(id, title, path, fields, note) {
  const a = h("a", { class: "button", target: "_blank", rel: "noopener", id: `${id}-link` }, "打开报告");
  const inputs = fields.map((f) => f.input);
  const update = () => {
    const q = new URLSearchParams(inputs.filter((i) => i.value.trim() !== "").map((i) => [i.name, i.value.trim()]));
    a.href = `${path}?${q}`;
  };
  inputs.forEach((i) => { i.addEventListener("input", update); i.addEventListener("change", update); });
  update();
  return h("form", { class: "card report", id, onsubmit: (ev) => { ev.preventDefault(); a.click(); } }, h("h3", {}, title),
    note ? h("p", { class: "meta" }, note) : null,
    h("div", { class: "fields" }, fields.map((f) => h("label", {}, f.label, f.input))), a);
}
const field = (name, label, value, attrs = {}) => ({ label, input: h("input", { name, value: value ?? "", size: 12, ...attrs }) });
const choice = (name, label, options, value) => ({ label,
  input: h("select", { name }, options.map(([v, l]) => h("option", { value: v, selected: v === value }, l))) });
const FORMAT = ["format", "格式", [["html", "网页 HTML"], ["csv", "CSV"], ["xlsx", "Excel XLSX"]], "html"];

async function reports() {
  const p = state.period, year = yearOf(p), months = monthsOf(p), month = months[months.length - 1];
  const quarter = `${year}Q${Math.ceil(+month.slice(5, 7) / 3)}`, half = `${year}H${+month.slice(5, 7) <= 6 ? 1 : 2}`;
  const bureau = state.who.is_bureau;
  const [regions, hospitals] = await Promise.all([regionsOf(year),
    bureau ? indicators({ period: year, by: "hospital" }).then((d) => ((d && d.rows) || []).map((r) => r.key)) : null]);
  const own = state.who.hospital_code;
  const hospitalField = bureau
    ? choice("hospital", "医院", (hospitals || []).map((x) => [x, x]), (hospitals || [])[0])
    : { label: "医院", input: h("input", { name: "hospital", value: own, readonly: true, size: 12 }) };
  const forms = [
    reportForm("report-feedback", "医院月度反馈", "/api/v1/reports/feedback", [hospitalField,
      field("month", "月份（YYYY-MM）", month, { pattern: "\\d{4}-\\d{2}" }), choice(...FORMAT)],
    "分组、高低倍率、支付、清单质量与监测疑点，按当前数据生成。"),
    bureau ? reportForm("report-bulletin", "数据工作组季度通报", "/api/v1/reports/bulletin", [
      choice("region", "统筹区", regions.map((r) => [r, r]), regions[0]), field("quarter", "季度（YYYYQn）", quarter),
      field("budget", "年度预算（元，可不填）", "", { inputmode: "decimal" }), choice(...FORMAT)],
    "基金概况、费用结构、各医院费用分布，按医院等级的平均住院日、次均费用与自费比例。") : null,
    reportForm("report-special", "特例单议半年公示", "/api/v1/reports/special-cases", [
      field("half", "半年（YYYYH1/H2）", half), choice(...FORMAT)], bureau ? "各医院特例单议申请数与评议结果。" : "本院的特例单议申请数与评议结果。"),
  ];
  let issued = null;
  if (!bureau && own) {
    const list = await api("/api/v1/reports/feedback/issued", { hospital: own }).catch(unlessStale({ issued: [] }));
    issued = h("div", { id: "issued-feedback" }, h("h3", {}, "已下发的月度反馈（预结算后生成）"),
      table([{ key: "period", label: "月份" }, { key: "version", label: "版本", kind: "int" },
        { label: "下发时间", value: (r) => when(r.issued_at) },
        { label: "报告", value: (r) => h("a", { target: "_blank", rel: "noopener",
          href: `/api/v1/reports/feedback/issued?${new URLSearchParams({ hospital: own, month: r.period, version: r.version })}` }, "打开") }],
      (list.issued || []).slice().sort((a, b) => b.period.localeCompare(a.period) || b.version - a.version), "尚未下发月度反馈"));
  }
  page("报告", h("p", { class: "meta" }, "报告在新标签页中打开，使用本次登录，无需再次输入令牌。"),
    h("div", { class: "two" }, forms.filter(Boolean)), issued);
}

// ------------------------------------------------------------------ routing, sign-in, sign-out

const ROUTES = { overview, trend, compare, groups, quality, flags, special, budget,
  evaluation, timeliness, feedback, negotiation, reports };

async function route() {
  if (!state.who) return;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const name = parts[0] || "overview";
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active",
    a.dataset.page === (name === "case" ? "drill" : name)));
  state.nav += 1;
  main().replaceChildren(h("p", { class: "empty" }, "加载中…"));
  try {
    if (name === "case" && parts[1]) await oneCase(parts[1]);
    else if (name === "negotiation" && parts[1]) await negotiationDraft(parts[1]);
    else if (name === "drill") await (parts[2] ? drillGroup(parts[1], parts[2]) : parts[1] ? drillHospital(parts[1]) : drillRegion());
    else await (ROUTES[name] || overview)();
  } catch (e) {
    if (e instanceof Stale) return;  // the user went on to another page meanwhile
    if (!(e instanceof ApiError && e.status === 401)) page("出错了", failure(e));
  }
}

function showSignIn(message) {
  state.who = null;
  disposeCharts();
  document.getElementById("app").hidden = true;
  document.getElementById("who").hidden = true;
  document.getElementById("period-form").hidden = true;
  document.getElementById("sign-in").hidden = false;
  document.getElementById("sign-in-error").textContent = message || "";
  document.getElementById("token").focus();
}

const ROLE_NAMES = { "bureau-analyst": "医保局分析员", "bureau-reviewer": "医保局评审员", "bureau-admin": "医保局管理员",
  "bureau-auditor": "医保局审计员", hospital: "医院" };
async function signedIn(who) {
  state.who = who;
  document.getElementById("sign-in").hidden = true;
  document.getElementById("app").hidden = false;
  document.getElementById("who").hidden = false;
  document.getElementById("period-form").hidden = false;
  document.getElementById("who-text").textContent =
    (ROLE_NAMES[who.role] || who.role) + (who.hospital_code ? ` · ${who.hospital_code}` : "");
  document.querySelectorAll("[data-bureau]").forEach((a) => { a.hidden = !who.is_bureau; });
  if (!state.period) state.period = await defaultPeriod();
  document.getElementById("period").value = state.period;
  await route();
}

async function start() {
  if (!chartsAvailable()) {
    const n = document.getElementById("notice");
    n.textContent = "图表库 Apache ECharts 未安装，图表无法显示：请在服务器上运行 bash scripts/install-web.sh（或 make setup）后刷新本页。";
    n.hidden = false;
  }
  document.getElementById("sign-in-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = document.getElementById("token");
    const r = await fetch("/dashboard/session", { method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
      body: new URLSearchParams({ token: input.value.trim() }) });
    input.value = "";  // the token is not kept anywhere in the page
    if (!r.ok) {
      const body = await r.json().catch(() => null);
      document.getElementById("sign-in-error").textContent = r.status === 429
        ? "失败次数过多，请稍后再试" : "令牌无效、已吊销或已过期" + (body && body.error ? `（${body.error.code}）` : "");
      return;
    }
    const who = await (await fetch("/dashboard/session", { credentials: "same-origin" })).json();
    await signedIn(who);
  });
  document.getElementById("sign-out").addEventListener("click", async () => {
    await fetch("/dashboard/session", { method: "DELETE", credentials: "same-origin" });
    state.period = null;
    showSignIn("已退出登录");
  });
  document.getElementById("period-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = document.getElementById("period").value.trim();
    if (/^\d{4}(-\d{2}|Q[1-4])?$/.test(v)) { state.period = v; route(); }
  });
  window.addEventListener("hashchange", route);
  const r = await fetch("/dashboard/session", { credentials: "same-origin", headers: { accept: "application/json" } });
  if (r.ok) await signedIn(await r.json()); else showSignIn();
}

document.addEventListener("DOMContentLoaded", start);
