#!/usr/bin/env python3
"""Registers a benchmark account and logs it in N times: one session per login.

    sessions.py URL EMAIL PASSWORD N OUT_PREFIX [--register] [--parallel P]

Writes OUT_PREFIX.access (one access token a line) and OUT_PREFIX.refresh (the matching refresh
tokens). Standard library only. Each login verifies an argon2id hash on the server, so N logins
take N hash times divided by the server's hashing slots; --parallel keeps those slots busy.
"""

import argparse
import concurrent.futures
import json
import sys
import urllib.error
import urllib.request


def post(url, body):
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("email")
    parser.add_argument("password")
    parser.add_argument("n", type=int)
    parser.add_argument("out_prefix")
    parser.add_argument("--register", action="store_true")
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    api = args.url.rstrip("/") + "/api/v1/auth"
    credentials = {"email": args.email, "password": args.password}

    if args.register:
        status, body = post(api + "/register", credentials)
        if status not in (201, 409):
            sys.exit(f"register: {status} {body}")

    def login(_):
        status, body = post(api + "/login", credentials)
        if status != 200:
            raise RuntimeError(f"login: {status} {body}")
        return body["accessToken"], body["refreshToken"]

    with concurrent.futures.ThreadPoolExecutor(max(1, args.parallel)) as pool:
        try:
            tokens = list(pool.map(login, range(args.n)))
        except RuntimeError as error:
            sys.exit(str(error))
    with open(args.out_prefix + ".access", "w") as access, open(
        args.out_prefix + ".refresh", "w"
    ) as refresh:
        for access_token, refresh_token in tokens:
            access.write(access_token + "\n")
            refresh.write(refresh_token + "\n")


if __name__ == "__main__":
    main()
