"""The NVML wrapper against a stand-in module (the real NVML runs in tests/energy/test_energy_gpu.py on a GPU)."""

from __future__ import annotations

import logging

import pytest
from helpers import ManualClock, until

from bandit_router.cli import main
from bandit_router.energy.nvml import NvmlSource


class NVMLError(Exception):
    pass


class FakeNvml:
    """GPU 0 has an energy counter; GPU 1 has only power readings; a GPU in ``lost`` fails every read."""

    NVMLError = NVMLError

    def __init__(self) -> None:
        self.millijoules = {0: 1_000_000}
        self.milliwatts = {0: 150_000, 1: 200_000}
        self.lost: set[int] = set()

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        if handle in self.lost or handle not in self.millijoules:
            raise NVMLError("Not Supported" if handle not in self.lost else "GPU is lost")
        return self.millijoules[handle]

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        if handle in self.lost:
            raise NVMLError("GPU is lost")
        return self.milliwatts[handle]


def test_counter_where_there_is_one_and_integrated_power_where_not() -> None:
    nvml, clock = FakeNvml(), ManualClock(start=100.0)
    # The sampling thread never ticks within the test: the test samples by hand, on its own clock.
    source = NvmlSource(nvml, {0: 0, 1: 1}, power_interval_s=3600, clock=clock)
    try:
        first = source.read()
        assert first[0] == pytest.approx(1000.0)
        nvml.millijoules[0] += 5_000
        clock.advance(0.3)
        source.sample()
        nvml.milliwatts[1] = 100_000
        clock.advance(0.5)
        source.sample()
        second = source.read()
        assert second[0] - first[0] == pytest.approx(5.0)
        # GPU 1 has no counter: 200 W for 0.3 s, then 100 W for 0.5 s.
        assert second[1] - first[1] == pytest.approx(200.0 * 0.3 + 100.0 * 0.5)
    finally:
        source.close()


async def test_the_sampling_thread_integrates_power_by_itself() -> None:
    nvml = FakeNvml()
    source = NvmlSource(nvml, {1: 1}, power_interval_s=0.01)
    try:
        await until(lambda: source.read()[1] > 0, 60, "the sampling thread's first sample")
    finally:
        source.close()
    # Stopped: no more samples.
    assert source.read() == source.read()


def test_a_lost_gpu_is_left_out_of_the_reading() -> None:
    nvml = FakeNvml()
    source = NvmlSource(nvml, {0: 0}, power_interval_s=0.01)
    nvml.lost.add(0)
    assert source.read() == {}
    source.close()


def test_without_nvml_the_source_is_absent_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
        pytest.skip("NVML is present on this host")
    except pynvml.NVMLError:
        pass
    with caplog.at_level(logging.WARNING, logger="bandit_router.energy.nvml"):
        assert NvmlSource.open() is None
    messages = [r.getMessage() for r in caplog.records if r.name == "bandit_router.energy.nvml"]
    assert len(messages) == 1 and messages[0].startswith("NVML unavailable (")


def test_energy_agent_needs_the_routers_redis(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("BANDIT_ROUTER_REDIS_URL", raising=False)
    assert main(["--log-level", "ERROR", "energy-agent"]) == 2
    assert "energy-agent needs the routers' Redis: set REDIS_URL or redis.url" in capsys.readouterr().err
