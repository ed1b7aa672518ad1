// bandit-router dashboard: fetches the JSON endpoints and draws them with Chart.js (vendored).
"use strict";

const charts = {};
const palette = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563"];
const color = (i) => palette[i % palette.length];
const clock = (t) => new Date(t * 1000).toLocaleTimeString();

function draw(id, type, data, options) {
  const chart = charts[id];
  if (chart) {
    chart.data = data;
    chart.update("none");
    return;
  }
  charts[id] = new Chart(document.getElementById(id), {
    type, data, options: { animation: false, responsive: true, maintainAspectRatio: false, ...options },
  });
}

function ready(panel, hasData) {
  document.querySelector(`[data-panel="${panel}"]`).dataset.ready = hasData ? "data" : "empty";
}

async function get(path) {
  const window = document.getElementById("window").value;
  const sep = path.includes("?") ? "&" : "?";
  const response = await fetch(`${path}${sep}window=${window}`);
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

async function summary() {
  const [s, h] = await Promise.all([get("/api/summary"), get("/api/health")]);
  const tiles = [
    ["served policy", s.policy_version], ["learner policy", s.learner_version], ["events learned", s.events_learned],
    ["gate promoted / held", `${s.gate_promotions} / ${s.gate_rejections}`], ["pending", h.pending],
    ["expired", h.expired], ["learner lag (events)", h.learner_lag_events],
    ["reward delay p50 / p95 (s)", h.reward_delay_s.p50 === null ? "-" :
      `${h.reward_delay_s.p50.toFixed(2)} / ${h.reward_delay_s.p95.toFixed(2)}`],
  ];
  document.getElementById("tiles").innerHTML =
    tiles.map(([k, v]) => `<div class="tile">${k}<b>${v}</b></div>`).join("");
  document.getElementById("alerts").innerHTML = s.alerts.map((a) => `<div class="alert">${a}</div>`).join("");
  const select = document.getElementById("task");
  const known = new Set([...select.options].map((o) => o.value));
  for (const task of s.tasks) {
    if (!known.has(task)) select.add(new Option(task, task));
  }
  ready("summary", true);
}

async function shares() {
  const task = document.getElementById("task").value;
  const d = await get(`/api/shares?task=${encodeURIComponent(task)}`);
  const models = Object.keys(d.share);
  draw("shares-chart", "line", {
    labels: d.t.map(clock),
    datasets: models.map((m, i) => ({
      label: m, data: d.share[m], fill: true, backgroundColor: color(i) + "99", borderColor: color(i), pointRadius: 0,
    })),
  }, { scales: { y: { stacked: true, min: 0, max: 1 } } });
  ready("shares", models.length > 0);
}

async function rewards() {
  const d = await get("/api/rewards");
  const labels = d.t.map(clock);
  draw("rewards-chart", "line", {
    labels,
    datasets: [
      { label: "mean reward", data: d.mean_reward, borderColor: color(0), spanGaps: true },
      { label: "mean quality", data: d.mean_quality, borderColor: color(2), spanGaps: true },
    ],
  }, {});
  draw("cost-chart", "line", {
    labels,
    datasets: [
      { label: "mean cost (USD)", data: d.mean_cost_usd, borderColor: color(1), spanGaps: true, yAxisID: "y" },
      { label: "mean energy (J)", data: d.mean_energy_joules, borderColor: color(6), spanGaps: true, yAxisID: "y1" },
    ],
  }, { scales: { y: { position: "left" }, y1: { position: "right", grid: { drawOnChartArea: false } } } });
  const models = Object.keys(d.per_model_mean_reward);
  draw("model-reward-chart", "line", {
    labels,
    datasets: models.map((m, i) => ({ label: m, data: d.per_model_mean_reward[m], borderColor: color(i), spanGaps: true })),
  }, {});
  const sources = Object.keys(d.energy_joules_by_source);
  draw("energy-chart", "bar", {
    labels,
    datasets: sources.map((s, i) => ({ label: s, data: d.energy_joules_by_source[s], backgroundColor: color(i + 3) })),
  }, { scales: { x: { stacked: true }, y: { stacked: true } } });
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
      { label: "TV from previous", data: points(d.tv_previous), borderColor: color(1) },
      { label: "KL from previous", data: points(d.kl_previous), borderColor: color(4), borderDash: [4, 3] },
      { label: "TV from first", data: points(d.tv_first), borderColor: color(0) },
      {
        type: "scatter", label: "snapshot served", data: served.map((g) => ({ x: g.t, y: 0 })),
        pointStyle: "triangle", pointRadius: 5, backgroundColor: "#16a34a",
      },
      {
        type: "scatter", label: "held back by the gate", data: held.map((g) => ({ x: g.t, y: 0 })),
        pointStyle: "crossRot", pointRadius: 7, borderColor: "#dc2626", borderWidth: 2,
      },
    ],
  }, { scales: { x: time } });
  const models = Object.keys(d.model_mass);
  draw("mass-chart", "line", {
    datasets: models.map((m, i) => ({ label: m, data: points(d.model_mass[m]), borderColor: color(i) })),
  }, { scales: { x: time, y: { min: 0, max: 1 } } });
  ready("drift", d.t.length > 0);
  ready("mass", models.length > 0);
}

async function exploration() {
  const d = await get("/api/exploration");
  draw("exploration-chart", "line", {
    labels: d.t.map(clock),
    datasets: [
      { label: "mean pmf entropy (nats)", data: d.mean_entropy, borderColor: color(3), spanGaps: true },
      { label: "mean chosen-action probability", data: d.mean_chosen_probability, borderColor: color(5), spanGaps: true },
    ],
  }, {});
  ready("exploration", d.mean_entropy.some((v) => v !== null));
}

async function ope() {
  const d = await get("/api/ope");
  const names = Object.keys(d.policies).filter((n) => d.policies[n].snips);
  draw("ope-chart", "bar", {
    labels: names,
    datasets: [
      {
        label: "95% interval", backgroundColor: "#93c5fd", minBarLength: 3, order: 2,
        data: names.map((n) => [d.policies[n].snips.low, d.policies[n].snips.high]),
      },
      {
        type: "line", label: "SNIPS estimate", showLine: false, pointRadius: 5, order: 1,
        borderColor: "#1e3a8a", backgroundColor: "#1e3a8a",
        data: names.map((n) => d.policies[n].snips.value),
      },
    ],
  }, { indexAxis: "x" });
  ready("ope", names.length > 0);
}

async function refresh() {
  const results = await Promise.allSettled([summary(), shares(), rewards(), drift(), exploration(), ope()]);
  for (const r of results) if (r.status === "rejected") console.error(r.reason);
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
}

document.getElementById("window").addEventListener("change", refresh);
document.getElementById("task").addEventListener("change", refresh);
setInterval(() => { if (document.getElementById("refresh").checked) refresh(); }, 2000);
refresh();
