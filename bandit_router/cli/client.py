"""The client commands: route, reward, models and stats against a running router, printed as JSON."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

DEFAULT_TARGET = "127.0.0.1:50051"


def _client_call(args: argparse.Namespace, method: str, request: Any) -> dict[str, Any]:
    from pathlib import Path

    from bandit_router.v1 import router_pb2_grpc

    if args.ca_cert:
        credentials = grpc.ssl_channel_credentials(root_certificates=Path(args.ca_cert).read_bytes())
        channel = grpc.secure_channel(args.target, credentials)
    else:
        channel = grpc.insecure_channel(args.target)
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else None
    with channel:
        stub = router_pb2_grpc.RouterStub(channel)
        reply = getattr(stub, method)(request, timeout=30, metadata=metadata)
    return _as_json(reply)


def _as_json(message: Any) -> dict[str, Any]:
    """The message as JSON the way a person reads it: int64 fields as numbers (protobuf's JSON mapping writes
    them as strings), and each Unix time ``*_at`` beside it as an ISO time."""
    import datetime

    from google.protobuf.descriptor import FieldDescriptor

    body = MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    for field in message.DESCRIPTOR.fields:
        value = body.get(field.name)
        if value is None:
            continue
        if field.cpp_type in (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64):
            body[field.name] = [int(v) for v in value] if isinstance(value, list) else int(value)
        elif field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE and field.message_type.GetOptions().map_entry is False:
            items = getattr(message, field.name)
            if isinstance(value, list):
                body[field.name] = [_as_json(item) for item in items]
            else:
                body[field.name] = _as_json(items)
        elif field.name.endswith("_at") and isinstance(value, float) and value > 0:
            when = datetime.datetime.fromtimestamp(value, datetime.UTC)
            body[f"{field.name}_iso"] = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return body


def _metadata(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE, got {text!r}")
    return key, value


def _route(args: argparse.Namespace) -> dict[str, Any]:
    from bandit_router.v1 import router_pb2 as pb

    request = pb.RouteRequest(
        query=args.text,
        request_id=args.request_id,
        candidates=args.candidates,
        task=args.task,
        metadata=dict(args.metadata),
    )
    if args.energy_weight is not None:
        request.preferences.energy_weight = args.energy_weight
    if args.cost_weight is not None:
        request.preferences.cost_weight = args.cost_weight
    for name, value in (
        ("max_cost_usd", args.max_cost),
        ("max_energy_joules", args.max_energy),
        ("max_latency_ms", args.max_latency),
    ):
        if value is not None:
            setattr(request.budget, name, value)
    return _client_call(args, "Route", request)


def _reward(args: argparse.Namespace) -> dict[str, Any]:
    from bandit_router.v1 import router_pb2 as pb

    request = pb.RewardRequest(
        decision_id=args.decision_id,
        quality=args.quality,
        input_tokens=args.input_tokens,
        output_tokens=args.output_tokens,
        latency_ms=args.latency_ms,
    )
    if args.energy_joules is not None:
        request.energy_joules = args.energy_joules
    if args.cost_usd is not None:
        request.cost_usd = args.cost_usd
    return _client_call(args, "Reward", request)


def _stats(args: argparse.Namespace) -> dict[str, Any]:
    from bandit_router.v1 import router_pb2 as pb

    return _client_call(args, "GetStats", pb.GetStatsRequest())


def _models(args: argparse.Namespace) -> dict[str, Any]:
    from bandit_router.v1 import router_pb2 as pb

    return _client_call(args, "ListModels", pb.ListModelsRequest())


def _printed(handler: Any) -> Any:
    """A command that prints the reply as JSON, or the gRPC status and its details (exit 1)."""

    def run(args: argparse.Namespace) -> int:
        try:
            print(json.dumps(handler(args), indent=2))
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
        return 0

    return run


COMMANDS = {
    name: _printed(h) for name, h in {"route": _route, "reward": _reward, "models": _models, "stats": _stats}.items()
}


def add_parsers(commands: Any) -> None:
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument("--target", default=DEFAULT_TARGET, help="router address (default: %(default)s)")
    target.add_argument(
        "--token",
        default=os.environ.get("BANDIT_ROUTER_TOKEN", ""),
        help="bearer token, when the router asks for one (default: $BANDIT_ROUTER_TOKEN)",
    )
    target.add_argument("--ca-cert", help="PEM certificate to trust: connect with TLS")

    route = commands.add_parser("route", parents=[target], help="route one query and print the decision as JSON")
    route.add_argument("text")
    route.add_argument("--task", default="")
    route.add_argument("--request-id", default="")
    route.add_argument("--candidates", nargs="*", default=[])
    route.add_argument("--energy-weight", type=float)
    route.add_argument("--cost-weight", type=float)
    route.add_argument("--max-cost", type=float, metavar="USD", help="budget: most expected cost of the answer")
    route.add_argument("--max-energy", type=float, metavar="JOULES", help="budget: most expected energy")
    route.add_argument("--max-latency", type=float, metavar="MS", help="budget: most expected latency")
    route.add_argument(
        "--metadata",
        type=_metadata,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata stored with the decision (logged, exported); may be repeated",
    )

    reward = commands.add_parser(
        "reward", parents=[target], help="send the reward of a decision and print the reply as JSON"
    )
    reward.add_argument("decision_id")
    reward.add_argument("quality", type=float)
    reward.add_argument("--input-tokens", type=int, default=0)
    reward.add_argument("--output-tokens", type=int, default=0)
    reward.add_argument("--latency-ms", type=float, default=0.0)
    reward.add_argument("--energy-joules", type=float)
    reward.add_argument("--cost-usd", type=float)

    commands.add_parser("models", parents=[target], help="print the catalog the router chooses from")
    commands.add_parser(
        "stats", parents=[target], help="print the policy's state, running estimates and the router's energy"
    )
