// bandit-router dashboard: fetches the JSON endpoints and draws them with Chart.js (vendored).
"use strict";

const charts = {};
// Each model's colour comes from the server (/api/summary), the same as in every report and plot; these are
// for the few fixed series (mean reward, quality, ...) and a model the summary has not named yet.
const series = ["#1f2937", "#2f9e44", "#e8590c", "#1971c2", "#9c36b5", "#0c8599", "#c2255c", "#5c940d"];
let modelColours = {};
const colourOf = (model, i) => modelColours[model] || series[i % series.length];
const clock = (t) => new Date(t * 1000).toLocaleTimeString();
const controls = { window: document.getElementById("window"), task: document.getElementById("task") };

// A value that counts as data: an empty bucket is null (a gap in the line, not a drop to zero).
const present = (v) => v !== null && v !== undefined && (typeof v !== "object" || present(v.y));
// Legends list only the series that have data in the window.
const legend = { labels: { filter: (item, data) => data.datasets[item.datasetIndex].data.some(present) } };

function draw(id, type, data, options) {
  const chart = charts[id];
  if (chart) {
    chart.data = data;
    chart.update("none");
    return;
  }
  charts[id] = new Chart(document.getElementById(id), {
    type,
    data,
    options: { animation: false, responsive: true, maintainAspectRatio: false, plugins: { legend }, ...options },
  });
}

function ready(panel, hasData) {
  document.querySelector(`[data-panel="${panel}"]`).dataset.ready = hasData ? "data" : "empty";
}

function seconds(s) {
  if (s >= 3600) return `${(s / 3600).toPrecision(2)} h`;
  if (s >= 60) return `${(s / 60).toPrecision(2)} min`;
  return `${s.toPrecision(2)} s`;
}

function bucket(panel, width) {
  const label = document.querySelector(`[data-panel="${panel}"] .bucket`);
  if (label) label.textContent = width ? `(buckets of ${seconds(width)})` : "";
}

async function get(path) {
  const sep = path.includes("?") ? "&" : "?";
  const response = await fetch(`${path}${sep}window=${controls.window.value}`);
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

// The window and task live in the URL, so a view can be bookmarked or shared.
function restore() {
  const query = new URLSearchParams(location.search);
  const window = query.get("window");
  if (window !== null && [...controls.window.options].some((o) => o.value === window)) controls.window.value = window;
  const task = query.get("task");
  if (task) {
    controls.task.add(new Option(task, task));
    controls.task.value = task;
  }
}

function remember() {
  const query = new URLSearchParams({ window: controls.window.value });
  if (controls.task.value) query.set("task", controls.task.value);
  history.replaceState(null, "", `?${query}`);
}

function showChange(alert) {
  const detail = document.getElementById("alert-detail");
  const rows = Object.entries(alert.change).sort((a, b) => a[1] - b[1]);
  detail.innerHTML =
    `<h3>${alert.version} against ${alert.previous}, ${clock(alert.t)}: each model's mean probability on the probes</h3>` +
    "<table><tr><th>model</th><th>before</th><th>after</th><th>change</th></tr>" +
    rows.map(([m, c]) => `<tr data-model="${m}"><td><span class="swatch" style="background:${colourOf(m, 0)}"></span>` +
      `${m}</td><td>${(alert.before[m] ?? 0).toFixed(3)}</td><td>${(alert.after[m] ?? 0).toFixed(3)}</td>` +
      `<td>${c >= 0 ? "+" : ""}${c.toFixed(3)}</td></tr>`).join("") +
    "</table>";
  detail.hidden = false;
}

async function summary() {
  const [s, h] = await Promise.all([get("/api/summary"), get("/api/health")]);
  modelColours = s.colours;
  // A tenant's view leaves out the figures pooled over every tenant (null): shown as "-".
  const tiles = [
    ["view", s.viewer], ["served policy", s.policy_version], ["learner policy", s.learner_version],
    ["events learned", s.events_learned],
    ["gate promoted / held", s.gate_promotions === null ? null : `${s.gate_promotions} / ${s.gate_rejections}`],
    ["pending", h.pending], ["expired", h.expired], ["learner lag (events)", h.learner_lag_events],
    ["reward delay p50 / p95 (s)", h.reward_delay_s.p50 === null ? null :
      `${h.reward_delay_s.p50.toFixed(2)} / ${h.reward_delay_s.p95.toFixed(2)}`],
  ];
  const tilesNode = document.getElementById("tiles");
  tilesNode.replaceChildren(...tiles.map(([k, v]) => {
    const tile = document.createElement("div");
    tile.className = "tile";
    tile.append(k);
    const value = document.createElement("b");
    value.textContent = v ?? "-";
    tile.append(value);
    return tile;
  }));
  const alerts = document.getElementById("alerts");
  alerts.replaceChildren(...s.alerts.map((a) => {
    const banner = document.createElement("div");
    banner.className = "alert";
    banner.dataset.kind = a.kind;
    banner.textContent = a.text;
    if (a.kind === "drift") {
      banner.dataset.version = a.version;
      banner.title = "show this snapshot's change";
      banner.tabIndex = 0;
      banner.addEventListener("click", () => showChange(a));
    }
    return banner;
  }));
  const known = new Set([...controls.task.options].map((o) => o.value));
  for (const task of s.tasks) {
    if (!known.has(task)) controls.task.add(new Option(task, task));
  }
  ready("summary", true);
}

async function shares() {
  const task = controls.task.value;
  const d = await get(`/api/shares?task=${encodeURIComponent(task)}`);
  const models = Object.keys(d.share);
  draw("shares-chart", "line", {
    labels: d.t.map(clock),
    datasets: models.map((m, i) => ({
      label: m, data: d.share[m], fill: true, backgroundColor: colourOf(m, i) + "99", borderColor: colourOf(m, i),
      pointRadius: 0, spanGaps: false,
    })),
  }, { scales: { y: { stacked: true, min: 0, max: 1 } } });
  bucket("shares", d.bucket_s);
  ready("shares", models.length > 0);
}

async function rewards() {
  const d = await get("/api/rewards");
  const labels = d.t.map(clock);
  draw("rewards-chart", "line", {
    labels,
    datasets: [
      { label: "mean reward", data: d.mean_reward, borderColor: series[0], spanGaps: false },
      { label: "mean quality", data: d.mean_quality, borderColor: series[1], spanGaps: false },
    ],
  }, {});
  draw("cost-chart", "line", {
    labels,
    datasets: [
      { label: "mean cost (USD)", data: d.mean_cost_usd, borderColor: series[2], spanGaps: false, yAxisID: "y" },
      { label: "mean energy (J)", data: d.mean_energy_joules, borderColor: series[3], spanGaps: false, yAxisID: "y1" },
    ],
  }, { scales: { y: { position: "left" }, y1: { position: "right", grid: { drawOnChartArea: false } } } });
  const models = Object.keys(d.per_model_mean_reward);
  draw("model-reward-chart", "line", {
    labels,
    datasets: models.map((m, i) => ({
      label: m, data: d.per_model_mean_reward[m], borderColor: colourOf(m, i), backgroundColor: colourOf(m, i),
      spanGaps: false,
    })),
  }, {});
  const sources = Object.keys(d.energy_joules_by_source);
  draw("energy-chart", "bar", {
    labels,
    datasets: sources.map((s, i) => ({ label: s, data: d.energy_joules_by_source[s], backgroundColor: series[i + 4] })),
  }, { scales: { x: { stacked: true }, y: { stacked: true } } });
  for (const panel of ["rewards", "model-reward", "cost", "energy"]) bucket(panel, d.bucket_s);
  const has = d.rewards.some((n) => n > 0);
  ready("rewards", has);
  ready("cost", has);
  ready("energy", has);
  ready("model-reward", models.length > 0);
}

async function drift() {
  const d = await get("/api/drift");
  const points = (values) => d.t.map((t, i) => ({ x: t, y: values[i] }));
  const time = { type: "linear", ticks: { callback: (v) => clock(v), maxTicksLimit: 8 } };
  const served = d.gate.filter((g) => g.promoted);
  const held = d.gate.filter((g) => !g.promoted);
  draw("drift-chart", "line", {
    datasets: [
      { label: "TV from previous", data: points(d.tv_previous), borderColor: series[2] },
      { label: "KL from previous", data: points(d.kl_previous), borderColor: series[4], borderDash: [4, 3] },
      { label: "TV from first", data: points(d.tv_first), borderColor: series[0] },
      {
        type: "scatter", label: "snapshot served", data: served.map((g) => ({ x: g.t, y: 0 })),
        pointStyle: "triangle", pointRadius: 5, backgroundColor: "#2f9e44",
      },
      {
        type: "scatter", label: "held back by the gate", data: held.map((g) => ({ x: g.t, y: 0 })),
        pointStyle: "crossRot", pointRadius: 7, borderColor: "#e03131", borderWidth: 2,
      },
    ],
  }, { scales: { x: time } });
  const models = Object.keys(d.model_mass);
  draw("mass-chart", "line", {
    datasets: models.map((m, i) => ({
      label: m, data: points(d.model_mass[m]), borderColor: colourOf(m, i), backgroundColor: colourOf(m, i),
    })),
  }, { scales: { x: time, y: { min: 0, max: 1 } } });
  ready("drift", d.t.length > 0);
  ready("mass", models.length > 0);
}

async function exploration() {
  const d = await get("/api/exploration");
  draw("exploration-chart", "line", {
    labels: d.t.map(clock),
    datasets: [
      { label: "mean pmf entropy (nats)", data: d.mean_entropy, borderColor: series[3], spanGaps: false },
      { label: "mean chosen-action probability", data: d.mean_chosen_probability, borderColor: series[5], spanGaps: false },
    ],
  }, {});
  bucket("exploration", d.bucket_s);
  ready("exploration", d.mean_entropy.some((v) => v !== null));
}

async function ope() {
  const d = await get("/api/ope");
  // The headline estimate: doubly robust where the router knows what it predicted for every decision, else SNIPS.
  const best = (n) => d.policies[n][d.headline] || d.policies[n].snips;
  const method = (n) => (d.policies[n][d.headline] ? d.headline : "snips").toUpperCase();
  const names = Object.keys(d.policies).filter((n) => best(n));
  const colour = (n, i) => (n.startsWith("always ") ? colourOf(n.slice(7), i) : series[0]);
  draw("ope-chart", "bar", {
    labels: names,
    datasets: [
      {
        label: "95% interval", backgroundColor: names.map((n, i) => colour(n, i) + "66"), minBarLength: 3, order: 2,
        data: names.map((n) => [best(n).low, best(n).high]),
      },
      {
        type: "line", label: `${d.headline.toUpperCase()} estimate`, showLine: false, pointRadius: 5, order: 1,
        borderColor: names.map((n, i) => colour(n, i)), backgroundColor: names.map((n, i) => colour(n, i)),
        data: names.map((n) => best(n).value),
      },
    ],
  }, {
    indexAxis: "x",
    plugins: { legend: { display: true }, tooltip: { callbacks: { footer: (items) => method(names[items[0].dataIndex]) } } },
  });
  // Policies too few decisions can speak for get no bar, only why (support, effective sample size).
  const refused = Object.keys(d.policies).filter((n) => d.policies[n].not_estimable);
  document.getElementById("ope-not-estimable").textContent = refused
    .map((n) => `${n}: ${d.policies[n].not_estimable}`)
    .join("; ");
  ready("ope", names.length > 0);
}

const figure = (v, digits) => (v === null ? "-" : v.toFixed(digits));

function table(id, head, rows) {
  const node = document.createElement("table");
  for (const cells of [head, ...rows]) {
    const row = node.insertRow();
    for (const cell of cells) {
      // textContent: a backend's error message or a tenant's name is shown, never interpreted.
      const item = document.createElement(cells === head ? "th" : "td");
      item.textContent = String(cell);
      row.append(item);
    }
  }
  document.getElementById(id).replaceChildren(node);
}

async function backends() {
  const { backends: rows } = await get("/api/backends");
  table("backends-table",
    ["model", "calls", "failures", "recent failure rate", "latency (ms)", "first token (ms)", "last failure"],
    rows.map((b) => [b.model, b.calls, b.failures, figure(b.recent_failure_rate, 2), figure(b.latency_ms, 1),
      figure(b.first_token_ms, 1), b.last_failure ? `${clock(b.last_failure_at)}: ${b.last_failure}` : "-"]));
  ready("backends", rows.length > 0);
}

async function rollout() {
  const { tenants: rows } = await get("/api/rollout");
  const shown = rows.filter((r) => r.configured === "apprentice" || r.n > 0);
  // Too few effective samples: no figures, only why.
  const interval = (r) => (r.not_estimable || (r.lower === null ? "-" : `[${figure(r.lower, 3)}, ${figure(r.upper, 3)}]`));
  const promotion = (r) => (r.promoted_at ? `promoted after ${r.promoted_at} rewards`
    : r.auto_promote ? `when the interval is above 0 (${Math.round(r.confidence * 100)}%)` : "by config change");
  table("rollout-table",
    ["tenant", "mode (configured / served)", "apprentice rewards", "ESS", "policy", "baseline", "difference",
      "confidence sequence", "online"],
    shown.map((r) => [r.tenant || "(default)", `${r.configured} / ${r.served}`, r.n, figure(r.ess, 0),
      figure(r.policy, 3), figure(r.baseline, 3), figure(r.difference, 3), interval(r), promotion(r)]));
  ready("rollout", shown.length > 0);
}

async function control() {
  const c = await get("/api/control");
  const arm = (a) => `${figure(a[c.value], 3)} (quality ${figure(a.quality, 3)}, $${figure(a.cost_usd, 6)}, `
    + `${figure(a.energy_joules, 1)} J; ${a.n} decisions)`;
  const measured = document.getElementById("control-measured");
  if (!c.share) {
    measured.textContent = "No control group: set rollout.control_share (e.g. 0.02) to measure routing against a "
      + "baseline on a random share of requests.";
  } else if (c.difference === null) {
    measured.textContent = `Control group: ${Math.round(c.share * 100)}% of requests, served by ${c.baseline}; `
      + `not enough rewarded decisions in both arms yet (${c.routed.n} routed, ${c.control.n} control).`;
  } else {
    const interval = c.lower === null ? "" : ` [${figure(c.lower, 3)}, ${figure(c.upper, 3)}] (anytime-valid 95%)`;
    measured.textContent = `Mean ${c.value}: routing ${arm(c.routed)} against the control group `
      + `(${Math.round(c.share * 100)}%, ${c.baseline}) ${arm(c.control)}; difference `
      + `${c.difference >= 0 ? "+" : ""}${figure(c.difference, 3)}${interval}.`;
  }
  const b = c.best_single;
  document.getElementById("control-estimated").textContent = b.not_estimable
    ? `Against the best single model (${b.method.toUpperCase()}): ${b.not_estimable}`
    : `Against the best single model, ${b.model} (${b.method.toUpperCase()}, off-policy): live policy `
      + `${figure(b.live.value, 3)} [${figure(b.live.low, 3)}, ${figure(b.live.high, 3)}] vs `
      + `${figure(b.single.value, 3)} [${figure(b.single.low, 3)}, ${figure(b.single.high, 3)}].`;
  ready("control", c.n > 0 || !b.not_estimable);
}

async function refresh() {
  // The summary first: it carries the models' colours every chart uses.
  const first = await Promise.allSettled([summary()]);
  const results = [...first, ...(await Promise.allSettled([shares(), rewards(), drift(), exploration(), ope(), control(), rollout(), backends()]))];
  for (const r of results) if (r.status === "rejected") console.error(r.reason);
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
}

restore();
for (const control of Object.values(controls)) {
  control.addEventListener("change", () => {
    remember();
    refresh();
  });
}
setInterval(() => { if (document.getElementById("refresh").checked) refresh(); }, 2000);
refresh();
