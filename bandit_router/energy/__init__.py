"""Energy: NVML sampling, attribution of GPU energy to decisions, and the energy agent."""
