#!/usr/bin/env python3
"""The shared client scenario, run with the installed sessionstore package.

Insert-only Upsert, Get, a CAS conflict (ABORTED, reason VERSION_MISMATCH),
Touch, ListByUser over pages, DeleteByUser with an exception, NOT_FOUND:
one "ok <step>" line each, exit 0; or the failed step and exit 1. Prints
step names and status reasons only, never ids or tokens.

    python scenario.py --target 127.0.0.1:50051 [--ca-file ca.crt] [--token-file token]
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

from sessionstore import AlreadyExists, NotFound, SessionStoreClient, VersionMismatch
from sessionstore.v1 import session_store_pb2 as pb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--ca-file")
    parser.add_argument("--token-file")
    args = parser.parse_args()
    token = Path(args.token_file).read_text().strip() if args.token_file else None
    ca = Path(args.ca_file).read_bytes() if args.ca_file else None
    user = f"user-{uuid.uuid4()}"

    def step(name: str, ok: bool) -> None:
        if not ok:
            raise AssertionError(name)
        print(f"ok {name}", flush=True)

    with SessionStoreClient(args.target, root_certificates=ca, token=token) as client:
        session = pb.Session(id="s1", user_id=user, refresh_token_id="rt-1")
        stored = client.upsert(session, 60, expected_version=0)
        step("insert-only upsert version=1", stored.version == 1)
        try:
            client.upsert(session, 60, expected_version=0)
            step("insert-only upsert again is ALREADY_EXISTS", False)
        except AlreadyExists as error:
            step(f"insert-only upsert again reason={error.reason}", error.reason == "SESSION_EXISTS")
        step("get", client.get(user, "s1").version == 1)
        client.upsert(session, 60, expected_version=1)
        try:
            client.upsert(session, 60, expected_version=1)
            step("stale CAS is ABORTED", False)
        except VersionMismatch as error:
            step(f"stale CAS reason={error.reason}", error.reason == "VERSION_MISMATCH")
        touched = client.touch(user, "s1", 120)
        step("touch keeps the version", touched.version == 2)
        for i in range(2, 6):
            client.upsert(pb.Session(id=f"s{i}", user_id=user), 60)
        pages, token_seen = 0, ""
        ids = []
        while True:
            sessions, token_seen = client.list_page(user, page_size=2, page_token=token_seen)
            pages += 1
            ids += [s.id for s in sessions]
            if token_seen == "":
                break
        step(f"list pages={pages} sessions={len(ids)}", ids == [f"s{i}" for i in range(1, 6)])
        step("list all", [s.id for s in client.list_sessions(user, page_size=2)] == ids)
        deleted = client.delete_by_user(user, except_session_ids=["s1"])
        step(f"delete-by-user deleted={deleted}", deleted == 4)
        step("kept", [s.id for s in client.list_sessions(user)] == ["s1"])
        try:
            client.get(user, "s2")
            step("get deleted is NOT_FOUND", False)
        except NotFound as error:
            step(f"get deleted reason={error.reason}", error.reason == "SESSION_NOT_FOUND")
    print("ok scenario passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as failed:
        print(f"FAILED {failed}", file=sys.stderr)
        sys.exit(1)
