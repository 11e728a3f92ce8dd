#!/usr/bin/python3
"""Reads, with Python grpcio, the google.rpc.ErrorInfo of SessionStore errors.

Used by test/server/python-client.test.ts: every error the server returns
carries a google.rpc.Status in the grpc-status-details-bin trailer, whose
details hold one google.rpc.ErrorInfo (domain "sessionstore"). Python reads
it from the call's trailing metadata, with stubs protoc generated from
google/rpc/status.proto and error_details.proto into --stubs.

    error_details.py --target 127.0.0.1:PORT --stubs DIR --user-id U

Makes three failing calls (a Get of a missing session, a Get with an empty
session_id, an Upsert with a ttl over the server's limit) and prints, for
each, "ok NAME code=CODE reason=REASON domain=DOMAIN metadata=K=V,K=V".
Exits 0 when every call failed with details, 1 with a FAIL line otherwise.
Prints no ids.
"""

from __future__ import annotations

import argparse
import sys

import grpc

DEADLINE_SECONDS = 5
DETAILS_KEY = "grpc-status-details-bin"


def error_info_of(error: grpc.RpcError):
    """The ErrorInfos of a failed call's grpc-status-details-bin, and the Status's code."""
    from google.rpc import error_details_pb2, status_pb2

    raw = [value for key, value in error.trailing_metadata() or () if key == DETAILS_KEY]
    if len(raw) != 1:
        return None, []
    status = status_pb2.Status.FromString(raw[0])
    infos = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append(info)
    return status.code, infos


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--stubs", required=True)
    parser.add_argument("--user-id", required=True)
    args = parser.parse_args()
    sys.path.insert(0, args.stubs)
    from google.protobuf import duration_pb2

    from sessionstore.v1 import session_store_pb2 as pb
    from sessionstore.v1 import session_store_pb2_grpc as rpc

    with grpc.insecure_channel(args.target) as channel:
        stub = rpc.SessionStoreServiceStub(channel)
        calls = [
            ("get-missing", lambda: stub.Get(pb.GetRequest(session_id="missing", user_id=args.user_id), timeout=DEADLINE_SECONDS)),
            ("get-empty-id", lambda: stub.Get(pb.GetRequest(session_id="", user_id=args.user_id), timeout=DEADLINE_SECONDS)),
            (
                "upsert-ttl-too-long",
                lambda: stub.Upsert(
                    pb.UpsertRequest(
                        session=pb.Session(id="s", user_id=args.user_id),
                        ttl=duration_pb2.Duration(seconds=10**10),
                    ),
                    timeout=DEADLINE_SECONDS,
                ),
            ),
        ]
        for name, call in calls:
            try:
                call()
            except grpc.RpcError as error:
                code, infos = error_info_of(error)
                if code != error.code().value[0] or len(infos) != 1:
                    print(f"FAIL {name}: {error.code().name} without one ErrorInfo")
                    return 1
                info = infos[0]
                metadata = ",".join(f"{k}={v}" for k, v in sorted(info.metadata.items()))
                print(
                    f"ok {name} code={error.code().name} reason={info.reason} "
                    f"domain={info.domain} metadata={metadata}"
                )
                continue
            print(f"FAIL {name}: succeeded")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
