// DRG/DIP 支付监测看板: the dashboard's views, drawn from the gateway's /api/v1 routes.
// Signed in by the session cookie (HttpOnly: this script never sees it); no token is kept here.
// Every text from the API is put in with textContent, never as HTML.
"use strict";

const state = { who: null, period: null };

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

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error && body.error.code;
  }
}

async function api(path, params) {
  const query = params ? "?" + new URLSearchParams(
    Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== "")) : "";
  const r = await fetch(path + query, { credentials: "same-origin", headers: { accept: "application/json" } });
  const body = await r.json().catch(() => null);
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
  const grouping = c.grouped ? await api(`/api/v1/cases/${encodeURIComponent(caseId)}/grouping`).catch(() => null) : null;
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

// ------------------------------------------------------------------ routing, sign-in, sign-out

const ROUTES = { overview, trend, compare, groups, quality, flags, special, budget };

async function route() {
  if (!state.who) return;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const name = parts[0] || "overview";
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active",
    a.dataset.page === (name === "case" ? "drill" : name)));
  main().replaceChildren(h("p", { class: "empty" }, "加载中…"));
  try {
    if (name === "case" && parts[1]) await oneCase(parts[1]);
    else if (name === "drill") await (parts[2] ? drillGroup(parts[1], parts[2]) : parts[1] ? drillHospital(parts[1]) : drillRegion());
    else await (ROUTES[name] || overview)();
  } catch (e) {
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
