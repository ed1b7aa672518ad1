"""The dashboard in a real headless browser (Debian's chromium, driven by Playwright) during a replay."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path
from typing import Any

from helpers import make_config, skip_or_fail
from playwright.async_api import async_playwright
from streams import FLAT, stream

from bandit_router.config import Config
from bandit_router.domain.requests import RewardInput, RouteInput
from bandit_router.embedding.model import Embedder
from bandit_router.offline.replay.run import replay
from bandit_router.offline.replay.settings import ReplaySettings
from bandit_router.runtime.process import RouterProcess
from bandit_router.runtime.root import open_router
from bandit_router.traffic.scenario import parse_scenario

ARTIFACTS = Path(os.environ.get("BANDIT_ROUTER_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts"))
PANELS = (
    "summary", "control", "shares", "rewards", "model-reward", "cost", "energy", "drift", "mass", "exploration", "ope"
)  # fmt: skip
# What the machine's closed network needs: no background connections, no sandbox as root.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        skip_or_fail("Debian's chromium is not installed: run scripts/browser.sh (scripts/test.sh does)")
    return path


async def test_dashboard_shows_every_panel_and_the_drift_after_a_model_degrades(
    config: Config, embedder: Embedder
) -> None:
    records = stream(300, 2, FLAT)
    scenario = parse_scenario(
        {"events": [{"at": 120, "kind": "degrade", "model": "gemma-2-9b-it", "quality_factor": 0.3}]}, records
    )
    started: list[RouterProcess] = []
    done = asyncio.Event()
    browser_done = asyncio.Event()

    async def hold(result: dict[str, Any]) -> None:
        done.set()
        await browser_done.wait()

    task = asyncio.create_task(
        replay(
            records,
            # Drift alerts from the 50th learned event on (the degradation comes at the 120th).
            # A fifth of the requests served uniformly at random: the control group the headline measures against.
            config.replace(policy={"gate_window": 0}, dashboard={"shift_window": 50}, rollout={"control_share": 0.2}),
            ReplaySettings(energy_weight=0.0, cost_weight=0.0, seed=3, scenario=scenario),
            embedder,
            show_progress=False,
            on_start=started.append,
            hold=hold,
        )
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1400, "height": 1800})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            while not started:
                await asyncio.sleep(0.05)
            dashboard = started[0].dashboard
            assert dashboard is not None
            # The page works while the replay runs...
            await page.goto(dashboard.url)
            await page.wait_for_function("Number(document.body.dataset.refreshed || 0) >= 1")
            await asyncio.wait_for(done.wait(), timeout=180)
            # ...and after it: one more refresh sees all of it.
            seen = int(await page.evaluate("Number(document.body.dataset.refreshed)"))
            await page.wait_for_function(f"Number(document.body.dataset.refreshed) > {seen}", timeout=10_000)
            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            states = {panel: await page.get_attribute(f'[data-panel="{panel}"]', "data-ready") for panel in PANELS}
            assert states == dict.fromkeys(PANELS, "data"), states
            tiles = await page.inner_text("#tiles")
            assert "served policy" in tiles and "learner lag" in tiles
            measured = await page.inner_text("#control-measured")
            assert re.match(r"Mean reward: routing 0\.\d+ .* against the control group \(20%, uniform\) ", measured)
            assert "anytime-valid 95%" in measured, measured
            # The drift panel moved: gemma's share of the probes' probability fell after it degraded.
            mass = await page.evaluate(
                """() => { const c = Chart.getChart('mass-chart');
                   const i = c.data.datasets.findIndex(d => d.label === 'gemma-2-9b-it');
                   return c.data.datasets[i].data.map(p => p.y); }"""
            )
            assert max(mass) >= 0.6 and mass[-1] <= 0.2, mass
            tv = await page.evaluate("() => Chart.getChart('drift-chart').data.datasets[2].data.map(p => p.y)")
            assert max(v for v in tv if v is not None) >= 0.4, tv
            # The swap that left gemma moved the policy beyond the alert threshold; the banner says when, and
            # which models gained and lost probability by how much.
            banners = await page.inner_text("#alerts")
            assert "in total variation from the one before it" in banners
            assert re.search(r"\d\d:\d\d:\d\d UTC: policy v\d+ moved .*lost [^;]*gemma-2-9b-it -[01]\.\d\d", banners), (
                banners
            )
            # Clicking it shows that snapshot's change, model by model.
            await page.click('#alerts [data-kind="drift"]')
            assert await page.is_visible("#alert-detail")
            change = await page.inner_text('#alert-detail tr[data-model="gemma-2-9b-it"] td:last-child')
            assert change.startswith("-"), change
            # Each model has one colour, distinct from the others', the same in every chart and the server's.
            colours = await page.evaluate(
                """async () => {
                   const served = (await (await fetch('/api/summary')).json()).colours;
                   const of = (id) => Object.fromEntries(
                     Chart.getChart(id).data.datasets.map(d => [d.label, d.borderColor]));
                   return {served, shares: of('shares-chart'), mass: of('mass-chart'),
                           reward: of('model-reward-chart')};
                   }"""
            )
            assert len(colours["shares"]) >= 2 and len(set(colours["shares"].values())) == len(colours["shares"]), (
                colours
            )
            for chart in ("shares", "mass", "reward"):
                assert all(colours[chart][m] == colours["served"][m] for m in colours[chart]), colours
            # Legends list only series with data: nothing is measured on a CPU host.
            legend = await page.evaluate("() => Chart.getChart('energy-chart').legend.legendItems.map(i => i.text)")
            assert "estimated" in legend and "measured" not in legend, legend
            assert re.fullmatch(
                r"\(buckets of [\d.]+ (s|min|h)\)", await page.inner_text('[data-panel="shares"] .bucket')
            )
            # Another window and a task filter still draw, and live in the URL: a reload keeps them.
            await page.select_option("#window", "300")
            await page.select_option("#task", "general")
            seen = int(await page.evaluate("Number(document.body.dataset.refreshed)"))
            await page.wait_for_function(f"Number(document.body.dataset.refreshed) > {seen}", timeout=10_000)
            assert await page.get_attribute('[data-panel="shares"]', "data-ready") == "data"
            assert "window=300" in page.url and "task=general" in page.url, page.url
            await page.reload()
            await page.wait_for_function("Number(document.body.dataset.refreshed || 0) >= 1")
            assert await page.input_value("#window") == "300" and await page.input_value("#task") == "general"
            await browser.close()
    finally:
        browser_done.set()
        await task
    assert errors == []


async def test_the_rollout_panel_shows_both_estimates_and_the_promotion(
    tmp_path: Path, redis_url: str, embedder: Embedder
) -> None:
    baseline, better = "gemma-2-9b-it", "llama-3.3-70b-instruct"
    rollout = {
        "mode": "apprentice",
        "baseline": baseline,
        "exploration": 0.3,
        "auto_promote": True,
        "promote_min_rewards": 40,
        "promote_horizon": 200,
    }
    service = await open_router(make_config(tmp_path, redis_url, rollout=rollout), embedder=embedder)
    server = RouterProcess(service, "127.0.0.1:0")
    errors: list[str] = []
    try:
        await server.start()
        assert service.learner is not None and server.dashboard is not None
        quality = {baseline: 0.1, better: 0.9}
        rewarded = 0
        while not service.serving.apprentices.promoted():
            assert rewarded < 600, f"not promoted after {rewarded} rewards"
            for i in range(20):
                decision = await service.route(
                    RouteInput(query=f"Question {rewarded + i}?", candidates=tuple(quality), energy_weight=0.0)
                )
                await service.reward(RewardInput(decision_id=decision.decision_id, quality=quality[decision.model]))
            rewarded += 20
            await service.learner.wait_learned(rewarded, timeout=60)
        ledger = service.serving.apprentices.ledger("")
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1400, "height": 1800})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(server.dashboard.url)
            await page.wait_for_function("Number(document.body.dataset.refreshed || 0) >= 1")
            assert await page.get_attribute('[data-panel="rollout"]', "data-ready") == "data"
            cells = await page.eval_on_selector_all(
                "#rollout-table tr", "rows => rows.map(r => [...r.children].map(c => c.textContent))"
            )
            await browser.close()
    finally:
        await server.stop(0)
    assert errors == []
    header, *rows = cells
    assert header[:3] == ["tenant", "mode (configured / served)", "apprentice rewards"], header
    (row,) = rows
    shown = dict(zip(header, row, strict=True))
    assert shown["tenant"] == "(default)" and shown["mode (configured / served)"] == "apprentice / online"
    assert (
        shown["apprentice rewards"] == str(ledger.n)
        and shown["online"] == f"promoted after {ledger.promoted_at} rewards"
    )
    assert float(shown["policy"]) > float(shown["baseline"])
    lower = float(shown["confidence sequence"].strip("[]").split(",")[0])
    assert lower > 0, shown
