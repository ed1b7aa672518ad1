"""GPU energy counters: NVML's cumulative counters (or power integrated where a GPU has none), made monotonic."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

log = logging.getLogger(__name__)


class CounterSource(Protocol):
    """Raw cumulative energy per GPU index, in joules; a GPU that cannot be read is left out."""

    def read(self) -> dict[int, float]: ...


class Cumulative:
    """Turns raw counter readings into monotone cumulative joules.

    A reading below the previous one means the counter wrapped (at ``wrap_joules``, when known) or was
    reset (a driver reload): the energy since then is counted, never a negative step.
    """

    def __init__(self, wrap_joules: float | None = None) -> None:
        self.wrap_joules = wrap_joules
        self._last: dict[int, float] = {}
        self.total: dict[int, float] = {}

    def update(self, readings: dict[int, float]) -> dict[int, float]:
        for gpu, raw in readings.items():
            last = self._last.get(gpu)
            if last is None:
                delta = 0.0
            elif raw >= last:
                delta = raw - last
            elif self.wrap_joules is not None:
                delta = raw + self.wrap_joules - last
            else:
                delta = raw
            self._last[gpu] = raw
            self.total[gpu] = self.total.get(gpu, 0.0) + delta
        return {gpu: self.total[gpu] for gpu in readings}


class NvmlSource:
    """Cumulative energy of the local NVIDIA GPUs through NVML.

    Uses the driver's energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ since the driver
    loaded) where the GPU has one; otherwise a background thread integrates ``nvmlDeviceGetPowerUsage``
    (mW) every ``power_interval_s``. A GPU whose reads fail is left out of the reading.
    """

    # NVML's counter is an unsigned 64-bit count of millijoules.
    WRAP_JOULES = 2**64 / 1000

    def __init__(
        self,
        nvml: Any,
        handles: dict[int, Any],
        power_interval_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nvml = nvml
        self._handles = handles
        self._integrated: dict[int, float] = {}
        self._clock = clock
        self._last_sample = clock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        unsupported = [i for i, h in handles.items() if not self._has_counter(h)]
        if unsupported:
            log.info("GPUs %s have no energy counter; integrating their sampled power", unsupported)
            self._integrated = {i: 0.0 for i in unsupported}
            self._thread = threading.Thread(
                target=self._integrate, args=(power_interval_s,), daemon=True, name="nvml-power"
            )
            self._thread.start()

    @classmethod
    def open(cls, indices: Iterable[int] | None = None) -> NvmlSource | None:
        """The local GPUs (all, or ``indices``), or None with one log line when NVML is absent."""
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
        except Exception as exc:  # no library, no driver, no GPU: the service runs on unmeasured
            log.warning("NVML unavailable (%s): GPU energy will not be measured on this host", exc)
            return None
        wanted = range(count) if indices is None else [i for i in indices if 0 <= i < count]
        return cls(pynvml, {i: pynvml.nvmlDeviceGetHandleByIndex(i) for i in wanted})

    def _has_counter(self, handle: Any) -> bool:
        try:
            self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            return True
        except self._nvml.NVMLError:
            return False

    def _integrate(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.sample()

    def sample(self) -> None:
        """Integrates each counterless GPU's power over the time since the last sample (the sampling thread
        calls this every ``power_interval_s``)."""
        with self._lock:
            now = self._clock()
            for gpu in list(self._integrated):
                try:
                    watts = self._nvml.nvmlDeviceGetPowerUsage(self._handles[gpu]) / 1000.0
                except self._nvml.NVMLError:
                    continue
                self._integrated[gpu] += watts * (now - self._last_sample)
            self._last_sample = now

    def read(self) -> dict[int, float]:
        readings: dict[int, float] = {}
        for gpu, handle in self._handles.items():
            if gpu in self._integrated:
                readings[gpu] = self._integrated[gpu]
                continue
            try:
                readings[gpu] = self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0
            except self._nvml.NVMLError as exc:
                log.warning("GPU %d cannot be read (%s); leaving it out", gpu, exc)
        return readings

    def power_watts(self, gpu: int) -> float:
        return float(self._nvml.nvmlDeviceGetPowerUsage(self._handles[gpu])) / 1000.0

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
