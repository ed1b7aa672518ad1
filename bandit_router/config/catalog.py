"""The model catalog's entries, and where the catalog starts from."""

from __future__ import annotations

import dataclasses
import re

from bandit_router.config.checks import MODEL_ID_PATTERN, finite_nonneg, positive, require

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One catalog entry: a model the router may choose, with its price and energy profile."""

    id: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    # Unknown for an API model (gpt-4o, a fine-tune behind a provider): its energy is then unknown too, unless
    # it is measured or reported, and the energy weight does not apply to it.
    parameters_b: float | None = None
    energy_j_per_output_token: float | None = None
    energy_j_per_input_token: float | None = None
    energy_profile_source: str = "unspecified"
    typical_output_tokens: float = 150.0
    # A disabled model stays in the catalog (and keeps its learned weights) but is never chosen.
    enabled: bool = True
    # Where the model runs, for measured energy: the GPU indices on ``node`` (empty: this router's
    # node). No GPUs means its energy is estimated from the profile above.
    node: str = ""
    gpus: tuple[int, ...] = ()
    # The gateway's backend: an OpenAI-compatible base URL (vLLM, TGI, llama.cpp, a provider; ".../v1"), the
    # model's name there (empty: the id) and the environment variable holding its API key (never the key).
    base_url: str = ""
    upstream_model: str = ""
    api_key_env: str = ""
    # The model's tokenizer (a local directory, or a Hugging Face id already in the local cache; never
    # downloaded): the gateway counts tokens with it where the backend reports no usage. Empty: estimated.
    tokenizer: str = ""
    # How long the backend may take to start answering (empty: http.backend_timeout_s), and for a stream to send
    # its first token (empty: no bound but http.deadline_s); past either, the next-best model answers.
    timeout_s: float | None = None
    first_token_timeout_s: float | None = None
    # Probed at start and while its breaker is open (GET base_url + health_path); empty: never probed.
    health_path: str = "/models"

    def __post_init__(self) -> None:
        require(
            bool(MODEL_ID_PATTERN.fullmatch(self.id)), "models.id", f"must match {MODEL_ID_PATTERN.pattern}", self.id
        )
        for name in ("input_usd_per_mtok", "output_usd_per_mtok"):
            finite_nonneg(f"models[{self.id}].{name}", getattr(self, name))
        for name in ("energy_j_per_output_token", "energy_j_per_input_token"):
            if getattr(self, name) is not None:
                finite_nonneg(f"models[{self.id}].{name}", getattr(self, name))
        require(
            (self.energy_j_per_output_token is None) == (self.energy_j_per_input_token is None),
            f"models[{self.id}].energy_j_per_output_token and energy_j_per_input_token",
            "must be given together (or both left out: energy unknown)",
            (self.energy_j_per_output_token, self.energy_j_per_input_token),
        )
        if self.parameters_b is not None:
            positive(f"models[{self.id}].parameters_b", self.parameters_b)
        positive(f"models[{self.id}].typical_output_tokens", self.typical_output_tokens)
        require(all(g >= 0 for g in self.gpus), f"models[{self.id}].gpus", "must be GPU indices >= 0", list(self.gpus))
        require(
            len(set(self.gpus)) == len(self.gpus), f"models[{self.id}].gpus", "must not repeat a GPU", list(self.gpus)
        )
        require(
            self.base_url == "" or self.base_url.startswith(("http://", "https://")),
            f"models[{self.id}].base_url",
            "must be empty or an http:// or https:// URL",
            self.base_url,
        )
        require(
            self.api_key_env == "" or ENV_NAME.fullmatch(self.api_key_env) is not None,
            f"models[{self.id}].api_key_env",
            "must name an environment variable ([A-Za-z_][A-Za-z0-9_]*), not hold the key",
            self.api_key_env[:4] + "..." if self.api_key_env else "",
        )

        for name in ("timeout_s", "first_token_timeout_s"):
            if getattr(self, name) is not None:
                positive(f"models[{self.id}].{name}", getattr(self, name))
        require(
            self.health_path == "" or self.health_path.startswith("/"),
            f"models[{self.id}].health_path",
            "must be empty or start with /",
            self.health_path,
        )

    @property
    def upstream(self) -> str:
        """The model's name at its backend."""
        return self.upstream_model or self.id

    @property
    def energy_known(self) -> bool:
        """Whether the catalog has an energy profile for the model (else only a measurement gives its energy)."""
        return self.energy_j_per_output_token is not None


CATALOG_BASES = ("auto", "shipped", "empty")


@dataclasses.dataclass(frozen=True)
class CatalogConfig:
    """Where the catalog starts before the configuration's ``[[models]]`` entries apply."""

    # "shipped": the shipped catalog (bandit_router/data/catalog.toml), which each [[models]] entry extends
    # (a new id) or overrides key by key (a shipped id, giving only the keys it changes). "empty": the
    # catalog is exactly the [[models]] entries. "auto": "shipped", unless an entry has a backend (base_url):
    # then the catalog is the user's own, exactly the [[models]] entries (one with a shipped id still takes the
    # shipped figures it does not give), so nothing is routed to a model the gateway cannot call.
    base: str = "auto"

    def __post_init__(self) -> None:
        require(
            self.base in CATALOG_BASES, "catalog.base", f"must be {', '.join(CATALOG_BASES[:-1])} or empty", self.base
        )
