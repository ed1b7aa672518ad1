from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Source(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SOURCE_UNSPECIFIED: _ClassVar[Source]
    SOURCE_REPORTED: _ClassVar[Source]
    SOURCE_MEASURED: _ClassVar[Source]
    SOURCE_COMPUTED: _ClassVar[Source]
    SOURCE_ESTIMATED: _ClassVar[Source]
    SOURCE_UNKNOWN: _ClassVar[Source]
SOURCE_UNSPECIFIED: Source
SOURCE_REPORTED: Source
SOURCE_MEASURED: Source
SOURCE_COMPUTED: Source
SOURCE_ESTIMATED: Source
SOURCE_UNKNOWN: Source

class Preferences(_message.Message):
    __slots__ = ("energy_weight", "cost_weight")
    ENERGY_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    COST_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    energy_weight: float
    cost_weight: float
    def __init__(self, energy_weight: _Optional[float] = ..., cost_weight: _Optional[float] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("max_cost_usd", "max_energy_joules", "max_latency_ms")
    MAX_COST_USD_FIELD_NUMBER: _ClassVar[int]
    MAX_ENERGY_JOULES_FIELD_NUMBER: _ClassVar[int]
    MAX_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    max_cost_usd: float
    max_energy_joules: float
    max_latency_ms: float
    def __init__(self, max_cost_usd: _Optional[float] = ..., max_energy_joules: _Optional[float] = ..., max_latency_ms: _Optional[float] = ...) -> None: ...

class RouteRequest(_message.Message):
    __slots__ = ("query", "request_id", "candidates", "preferences", "task", "metadata", "budget", "baseline")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    QUERY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    query: str
    request_id: str
    candidates: _containers.RepeatedScalarFieldContainer[str]
    preferences: Preferences
    task: str
    metadata: _containers.ScalarMap[str, str]
    budget: Budget
    baseline: str
    def __init__(self, query: _Optional[str] = ..., request_id: _Optional[str] = ..., candidates: _Optional[_Iterable[str]] = ..., preferences: _Optional[_Union[Preferences, _Mapping]] = ..., task: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., baseline: _Optional[str] = ...) -> None: ...

class ActionProbability(_message.Message):
    __slots__ = ("model", "probability")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    model: str
    probability: float
    def __init__(self, model: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class RouteResponse(_message.Message):
    __slots__ = ("decision_id", "model", "probability", "pmf", "policy_version", "task", "task_source", "cluster", "estimated_cost_usd", "estimated_energy_joules", "energy_weight", "cost_weight", "expires_at", "replayed", "excluded", "mode")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    PMF_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    TASK_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_USD_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_ENERGY_JOULES_FIELD_NUMBER: _ClassVar[int]
    ENERGY_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    COST_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    model: str
    probability: float
    pmf: _containers.RepeatedCompositeFieldContainer[ActionProbability]
    policy_version: str
    task: str
    task_source: str
    cluster: int
    estimated_cost_usd: float
    estimated_energy_joules: float
    energy_weight: float
    cost_weight: float
    expires_at: float
    replayed: bool
    excluded: _containers.RepeatedScalarFieldContainer[str]
    mode: str
    def __init__(self, decision_id: _Optional[str] = ..., model: _Optional[str] = ..., probability: _Optional[float] = ..., pmf: _Optional[_Iterable[_Union[ActionProbability, _Mapping]]] = ..., policy_version: _Optional[str] = ..., task: _Optional[str] = ..., task_source: _Optional[str] = ..., cluster: _Optional[int] = ..., estimated_cost_usd: _Optional[float] = ..., estimated_energy_joules: _Optional[float] = ..., energy_weight: _Optional[float] = ..., cost_weight: _Optional[float] = ..., expires_at: _Optional[float] = ..., replayed: _Optional[bool] = ..., excluded: _Optional[_Iterable[str]] = ..., mode: _Optional[str] = ...) -> None: ...

class RewardRequest(_message.Message):
    __slots__ = ("decision_id", "quality", "input_tokens", "output_tokens", "latency_ms", "energy_joules", "cost_usd")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_JOULES_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    quality: float
    input_tokens: int
    output_tokens: int
    latency_ms: float
    energy_joules: float
    cost_usd: float
    def __init__(self, decision_id: _Optional[str] = ..., quality: _Optional[float] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., latency_ms: _Optional[float] = ..., energy_joules: _Optional[float] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class RewardResponse(_message.Message):
    __slots__ = ("reward", "decision_id", "model", "cost_usd", "cost_source", "cost_basis", "energy_joules", "energy_source", "energy_basis")
    REWARD_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    COST_SOURCE_FIELD_NUMBER: _ClassVar[int]
    COST_BASIS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_JOULES_FIELD_NUMBER: _ClassVar[int]
    ENERGY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    ENERGY_BASIS_FIELD_NUMBER: _ClassVar[int]
    reward: float
    decision_id: str
    model: str
    cost_usd: float
    cost_source: Source
    cost_basis: str
    energy_joules: float
    energy_source: Source
    energy_basis: str
    def __init__(self, reward: _Optional[float] = ..., decision_id: _Optional[str] = ..., model: _Optional[str] = ..., cost_usd: _Optional[float] = ..., cost_source: _Optional[_Union[Source, str]] = ..., cost_basis: _Optional[str] = ..., energy_joules: _Optional[float] = ..., energy_source: _Optional[_Union[Source, str]] = ..., energy_basis: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("id", "input_usd_per_mtok", "output_usd_per_mtok", "parameters_b", "energy_j_per_output_token", "energy_j_per_input_token", "energy_profile_source", "typical_output_tokens")
    ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_USD_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_USD_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_B_FIELD_NUMBER: _ClassVar[int]
    ENERGY_J_PER_OUTPUT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ENERGY_J_PER_INPUT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ENERGY_PROFILE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    TYPICAL_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    id: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    parameters_b: float
    energy_j_per_output_token: float
    energy_j_per_input_token: float
    energy_profile_source: str
    typical_output_tokens: float
    def __init__(self, id: _Optional[str] = ..., input_usd_per_mtok: _Optional[float] = ..., output_usd_per_mtok: _Optional[float] = ..., parameters_b: _Optional[float] = ..., energy_j_per_output_token: _Optional[float] = ..., energy_j_per_input_token: _Optional[float] = ..., energy_profile_source: _Optional[str] = ..., typical_output_tokens: _Optional[float] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelEstimate(_message.Message):
    __slots__ = ("model", "cost_usd", "energy_joules", "latency_ms", "observations", "latency_observations")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    ENERGY_JOULES_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    cost_usd: float
    energy_joules: float
    latency_ms: float
    observations: int
    latency_observations: int
    def __init__(self, model: _Optional[str] = ..., cost_usd: _Optional[float] = ..., energy_joules: _Optional[float] = ..., latency_ms: _Optional[float] = ..., observations: _Optional[int] = ..., latency_observations: _Optional[int] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("policy_version", "events_learned", "estimates", "embedding_device", "queries_embedded", "embedding_energy_joules", "embedding_energy_source", "embedding_energy_basis", "control")
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    EVENTS_LEARNED_FIELD_NUMBER: _ClassVar[int]
    ESTIMATES_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DEVICE_FIELD_NUMBER: _ClassVar[int]
    QUERIES_EMBEDDED_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_ENERGY_JOULES_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_ENERGY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_ENERGY_BASIS_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    policy_version: str
    events_learned: int
    estimates: _containers.RepeatedCompositeFieldContainer[ModelEstimate]
    embedding_device: str
    queries_embedded: int
    embedding_energy_joules: float
    embedding_energy_source: Source
    embedding_energy_basis: str
    control: ControlGroup
    def __init__(self, policy_version: _Optional[str] = ..., events_learned: _Optional[int] = ..., estimates: _Optional[_Iterable[_Union[ModelEstimate, _Mapping]]] = ..., embedding_device: _Optional[str] = ..., queries_embedded: _Optional[int] = ..., embedding_energy_joules: _Optional[float] = ..., embedding_energy_source: _Optional[_Union[Source, str]] = ..., embedding_energy_basis: _Optional[str] = ..., control: _Optional[_Union[ControlGroup, _Mapping]] = ...) -> None: ...

class ControlArm(_message.Message):
    __slots__ = ("decisions", "mean_reward", "mean_quality", "mean_cost_usd", "mean_energy_joules")
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    MEAN_REWARD_FIELD_NUMBER: _ClassVar[int]
    MEAN_QUALITY_FIELD_NUMBER: _ClassVar[int]
    MEAN_COST_USD_FIELD_NUMBER: _ClassVar[int]
    MEAN_ENERGY_JOULES_FIELD_NUMBER: _ClassVar[int]
    decisions: int
    mean_reward: float
    mean_quality: float
    mean_cost_usd: float
    mean_energy_joules: float
    def __init__(self, decisions: _Optional[int] = ..., mean_reward: _Optional[float] = ..., mean_quality: _Optional[float] = ..., mean_cost_usd: _Optional[float] = ..., mean_energy_joules: _Optional[float] = ...) -> None: ...

class ControlGroup(_message.Message):
    __slots__ = ("share", "baseline", "routed", "control", "difference", "lower", "upper", "value")
    SHARE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    ROUTED_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    share: float
    baseline: str
    routed: ControlArm
    control: ControlArm
    difference: float
    lower: float
    upper: float
    value: str
    def __init__(self, share: _Optional[float] = ..., baseline: _Optional[str] = ..., routed: _Optional[_Union[ControlArm, _Mapping]] = ..., control: _Optional[_Union[ControlArm, _Mapping]] = ..., difference: _Optional[float] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., value: _Optional[str] = ...) -> None: ...
