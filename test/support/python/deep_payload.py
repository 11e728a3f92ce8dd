#!/usr/bin/python3
"""Reads back, with Python grpcio, sessions whose extra_payload nests deep.

Used by test/server/python-client.test.ts: the server promises that every
session it stores can be read by every client, and Python's C++ protobuf
decoder is the strictest about nesting (it counts the map entry between a
Struct and each of its Values toward its limit of 100).

    deep_payload.py --target 127.0.0.1:PORT --stubs DIR --user-id U \
        --max-depth 32 --read SESSION_ID [--read SESSION_ID ...]

For each --read id: Get it and print "ok get depth=N"; then ListByUser the
user and print "ok list sessions=N depths=N,N". Then Upsert, from Python,
one payload of exactly --max-depth levels ("ok upsert-max depth=N") and one
a level deeper, which must fail INVALID_ARGUMENT naming the field
("ok upsert-too-deep code=INVALID_ARGUMENT"). Exits 0 when all pass, 1 with
a FAIL line otherwise. Prints no ids or payloads.
"""

from __future__ import annotations

import argparse
import sys

import grpc

DEADLINE_SECONDS = 5


def depth_of_struct(struct, level: int = 1) -> int:
    """Message levels as the server counts them: Struct 1, each Value +1, each Struct/ListValue in a Value +1."""
    deepest = level
    for value in struct.fields.values():
        deepest = max(deepest, depth_of_value(value, level + 1))
    return deepest


def depth_of_value(value, level: int) -> int:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return depth_of_struct(value.struct_value, level + 1)
    if kind == "list_value":
        deepest = level + 1
        for item in value.list_value.values:
            deepest = max(deepest, depth_of_value(item, level + 2))
        return deepest
    return level


def nested_struct(depth: int):
    """A Struct exactly `depth` levels deep: objects nested in objects, the last level a number or an empty object."""
    from google.protobuf import struct_pb2

    root = struct_pb2.Struct()
    current, level = root, 1
    while level < depth:
        value = current.fields["a"]
        level += 1
        if level == depth:
            value.number_value = 1
        else:
            value.struct_value.SetInParent()
            current = value.struct_value
            level += 1
    return root


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--stubs", required=True)
    parser.add_argument("--user-id", required=True)
    parser.add_argument("--max-depth", type=int, required=True)
    parser.add_argument("--read", action="append", default=[])
    args = parser.parse_args(argv)
    sys.path.insert(0, args.stubs)
    from google.protobuf import duration_pb2
    from sessionstore.v1 import session_store_pb2 as pb
    from sessionstore.v1 import session_store_pb2_grpc as pb_grpc

    with grpc.insecure_channel(args.target) as channel:
        stub = pb_grpc.SessionStoreServiceStub(channel)
        try:
            depths = []
            for session_id in args.read:
                got = stub.Get(
                    pb.GetRequest(session_id=session_id, user_id=args.user_id),
                    timeout=DEADLINE_SECONDS,
                )
                depth = depth_of_struct(got.session.extra_payload)
                depths.append(depth)
                print(f"ok get depth={depth}", flush=True)
            listed = stub.ListByUser(
                pb.ListByUserRequest(user_id=args.user_id), timeout=DEADLINE_SECONDS
            )
            listed_depths = sorted(depth_of_struct(s.extra_payload) for s in listed.sessions)
            print(
                f"ok list sessions={len(listed.sessions)} depths={','.join(map(str, listed_depths))}",
                flush=True,
            )

            def upsert(session_id: str, depth: int):
                session = pb.Session(id=session_id, user_id=args.user_id)
                session.extra_payload.CopyFrom(nested_struct(depth))
                return stub.Upsert(
                    pb.UpsertRequest(session=session, ttl=duration_pb2.Duration(seconds=60)),
                    timeout=DEADLINE_SECONDS,
                )

            stored = upsert("python-max", args.max_depth)
            print(f"ok upsert-max depth={depth_of_struct(stored.session.extra_payload)}", flush=True)
            try:
                upsert("python-too-deep", args.max_depth + 1)
                print("FAIL upsert-too-deep: accepted")
                return 1
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.INVALID_ARGUMENT or "session.extra_payload" not in (
                    error.details() or ""
                ):
                    print(f"FAIL upsert-too-deep: unexpected status {error.code().name}")
                    return 1
                print(f"ok upsert-too-deep code={error.code().name}", flush=True)
        except grpc.RpcError as error:
            print(f"FAIL: unexpected status {error.code().name}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
