#!/usr/bin/env python3
"""Asks a feedrank server for one user's feed and prints it.

    scripts/python-stubs.sh build/python
    PYTHONPATH=build/python /usr/bin/python3 examples/python/rank_feed.py \
        --target localhost:50051 --user 42 --count 10

Needs Debian's python3-grpcio and python3-protobuf.
"""
import argparse
import sys

import grpc

from feedrank.v1 import ranker_pb2, ranker_pb2_grpc


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="localhost:50051", help="host:port of the server")
    parser.add_argument("--user", type=int, required=True, help="user id")
    parser.add_argument("--count", type=int, default=10, help="page size")
    parser.add_argument("--exclude", type=int, nargs="*", default=[], help="video ids to exclude")
    parser.add_argument("--deadline", type=float, default=1.0, help="seconds")
    parser.add_argument("--wait", type=float, default=10.0,
                        help="seconds to wait for the server to be ready")
    args = parser.parse_args()

    with grpc.insecure_channel(args.target) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=args.wait)
        except grpc.FutureTimeoutError:
            print(f"error: {args.target} is not reachable", file=sys.stderr)
            return 1
        stub = ranker_pb2_grpc.FeedRankerStub(channel)
        request = ranker_pb2.RankFeedRequest(user_id=args.user, count=args.count,
                                             exclude_ids=args.exclude,
                                             request_id=f"python-{args.user}")
        try:
            response = stub.RankFeed(request, timeout=args.deadline, wait_for_ready=True)
        except grpc.RpcError as error:
            # The status code says what to do (see docs/API.md): INVALID_ARGUMENT
            # is a bad request, UNAVAILABLE a retry on another replica.
            print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
            return 2 if error.code() == grpc.StatusCode.INVALID_ARGUMENT else 1

    print(f"bundle {response.bundle_version}  config {response.config_version}"
          f"  cold_start {response.cold_start}  degraded {response.degraded}")
    for rank, item in enumerate(response.items, 1):
        predictions = " ".join(f"{name}={p:.3f}"
                               for name, p in zip(response.objectives, item.predictions))
        print(f"{rank:3d}  video {item.video_id}  creator {item.creator_id}"
              f"  score {item.score:.4f}  {ranker_pb2.Source.Name(item.source)}  {predictions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
