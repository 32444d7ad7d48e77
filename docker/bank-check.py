#!/usr/bin/env python3
"""The bank half of scripts/compose-test: accounts, a concurrent transfer load across the bank
replicas (two on SQLite, three in the PostgreSQL variant), and the lock-outage and restart checks. Talks to the bank only through grpcurl
($GRPCURL), over mutual TLS when TOWNSHIP_CA, TOWNSHIP_CERT and TOWNSHIP_KEY name the CA and the
client's certificate and key (as for the `township` CLI), else in plaintext; keeps what later steps
need (session, account ids, balances) in a JSON state file.

  bank-check.py setup   STATE ADMIN_TOKEN_FILE ADDR...
  bank-check.py load    STATE ADDR... [--workers 8] [--transfers 25] [--attempts 10]
  bank-check.py total   STATE ADDR... [--save | --expect-saved]
  bank-check.py unavailable STATE NAME ADDR [--within 6]
  bank-check.py recover STATE NAME ADDR [--within 30]
"""

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid

GRPCURL = os.environ.get("GRPCURL", "grpcurl")
SERVICE = "township.bank.v1.BankService"
ACCOUNTS = 4
INITIAL_CENTS = 100_000
HOLDER, PIN = "Load Tester", "13579"
RETRYABLE = ("Code: Unavailable", "Code: DeadlineExceeded", "Code: Aborted")


class Refused(Exception):
    """The bank answered with an error (its grpcurl text is the message)."""


def transport_flags():
    """grpcurl's flags for mutual TLS from the CLI's environment variables, or -plaintext."""
    files = [os.environ.get(name, "") for name in ("TOWNSHIP_CA", "TOWNSHIP_CERT", "TOWNSHIP_KEY")]
    if all(files):
        return ["-cacert", files[0], "-cert", files[1], "-key", files[2]]
    if any(files):
        sys.exit("bank-check.py: set all of TOWNSHIP_CA, TOWNSHIP_CERT and TOWNSHIP_KEY, or none")
    return ["-plaintext"]


def call(addr, method, body, token=None, timeout=15):
    cmd = [GRPCURL, *transport_flags(), "-max-time", str(timeout)]
    if token:
        cmd += ["-H", f"authorization: Bearer {token}"]
    cmd += ["-d", json.dumps(body), addr, f"{SERVICE}/{method}"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        raise Refused(f"Code: DeadlineExceeded (grpcurl did not finish within {timeout + 5}s)")
    if out.returncode != 0:
        raise Refused((out.stdout + out.stderr).strip())
    return json.loads(out.stdout) if out.stdout.strip() else {}


def load_state(path):
    with open(path) as f:
        return json.load(f)


def save_state(path, state):
    with open(path + ".new", "w") as f:
        json.dump(state, f, indent=1)
    os.replace(path + ".new", path)


def say(text):
    print(f"  bank: {text}", flush=True)


def setup(args):
    token = open(args.admin_token_file).read().strip()
    assert token, "the admin token file is empty"
    ids = []
    for i in range(ACCOUNTS):
        addr = args.addrs[i % len(args.addrs)]
        account = call(addr, "OpenAccount", {
            "holder_name": HOLDER, "pin": PIN, "initial_deposit_cents": INITIAL_CENTS,
            "request_id": str(uuid.uuid4())}, token)
        ids.append(account["accountId"])
    login = call(args.addrs[-1], "Login", {"holder_name": HOLDER, "pin": PIN})
    assert sorted(login["accountIds"]) == sorted(ids), f"Login lists {login['accountIds']}, opened {ids}"
    save_state(args.state, {"session": login["sessionToken"], "accounts": ids,
                            "total": ACCOUNTS * INITIAL_CENTS})
    say(f"opened {ACCOUNTS} accounts of {INITIAL_CENTS} cents across {len(args.addrs)} replicas; "
        f"logged in on the last; the session works on every one")


def transfer_body(src, dst, cents, request_id=None):
    return {"from_account_id": src, "to_account_id": dst, "amount_cents": cents,
            "request_id": request_id or str(uuid.uuid4())}


def load(args):
    state = load_state(args.state)
    session, ids = state["session"], state["accounts"]
    stats = {"ok": 0, "insufficient": 0, "retries": 0}
    receipts = []
    errors = []
    lock = threading.Lock()

    def worker(n):
        rng = random.Random(n)
        for _ in range(args.transfers):
            src, dst = rng.sample(ids, 2)
            body = transfer_body(src, dst, rng.randint(1, 60_000))
            for attempt in range(args.attempts):
                # Each attempt goes to either replica: a retry with the same request id may land
                # on the other one and must still apply at most once.
                addr = args.addrs[(n + attempt) % len(args.addrs)]
                try:
                    receipt = call(addr, "Transfer", body, session)
                    with lock:
                        stats["ok"] += 1
                        receipts.append((body, receipt))
                    break
                except Refused as err:
                    text = str(err)
                    if "INSUFFICIENT_FUNDS" in text or "insufficient" in text.lower():
                        with lock:
                            stats["insufficient"] += 1
                        break
                    if any(code in text for code in RETRYABLE):
                        with lock:
                            stats["retries"] += 1
                        time.sleep(min(0.2 * (attempt + 1), 1.0))
                        continue
                    with lock:
                        errors.append(text)
                    return
            else:
                with lock:
                    errors.append(f"transfer {body['request_id']} still failing after {args.attempts} attempts")

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    if errors:
        sys.exit("bank load: unexpected errors:\n  " + "\n  ".join(errors[:10]))
    attempted = args.workers * args.transfers
    say(f"{attempted} concurrent transfers ({args.workers} clients, alternating between "
        f"{len(args.addrs)} replicas) "
        f"in {elapsed:.1f}s: {stats['ok']} applied, {stats['insufficient']} refused for "
        f"insufficient funds, {stats['retries']} retried with their request id")
    if stats["ok"] == 0:
        sys.exit("bank load: no transfer was applied")

    # Exactly once: a retry of an applied transfer, on the other replica, returns its receipt.
    body, receipt = receipts[len(receipts) // 2]
    for addr in args.addrs:
        again = call(addr, "Transfer", body, session)
        if again.get("transactionId") != receipt.get("transactionId"):
            sys.exit(f"bank load: replaying request {body['request_id']} gave {again}, first {receipt}")
    say("replaying an applied transfer's request id on every replica returned the original receipt")
    check_total(state, args.addrs)


def read_retrying(addr, method, body, token, within=30.0):
    """A read, retried while the bank answers UNAVAILABLE, DEADLINE_EXCEEDED or ABORTED (reads
    take a lock too, so a lock leader change refuses them for a few seconds), for `within` s."""
    started = time.monotonic()
    while True:
        try:
            return call(addr, method, body, token)
        except Refused as err:
            if not any(code in str(err) for code in RETRYABLE) or time.monotonic() - started > within:
                raise
            time.sleep(0.5)


def balances(state, addr):
    return {i: int(read_retrying(addr, "GetBalance", {"account_id": i}, state["session"])["balanceCents"])
            for i in state["accounts"]}


def check_total(state, addrs):
    seen = None
    for addr in addrs:
        b = balances(state, addr)
        total = sum(b.values())
        if total != state["total"]:
            sys.exit(f"bank: total of balances on {addr} is {total}, expected {state['total']}: {b}")
        if any(v < 0 for v in b.values()):
            sys.exit(f"bank: a negative balance on {addr}: {b}")
        if seen is not None and b != seen:
            sys.exit(f"bank: the replicas disagree: {seen} vs {b}")
        seen = b
    say(f"total of balances is {state['total']} cents on every replica (conserved): "
        + ", ".join(str(v) for v in seen.values()))
    return seen


def total(args):
    state = load_state(args.state)
    seen = check_total(state, args.addrs)
    if args.save:
        state["saved_balances"] = seen
        save_state(args.state, state)
    if args.expect_saved:
        if seen != state["saved_balances"]:
            sys.exit(f"bank: balances changed: before {state['saved_balances']}, now {seen}")
        say("every balance is as it was before the restart")


def unavailable(args):
    """With the lock service (or the database) down, a transfer must fail promptly with
    UNAVAILABLE, change nothing, and be kept (request id and all) for `recover`."""
    state = load_state(args.state)
    src, dst = state["accounts"][:2]
    body = transfer_body(src, dst, 1)
    started = time.monotonic()
    try:
        receipt = call(args.addr, "Transfer", body, state["session"], timeout=int(args.within) + 5)
        sys.exit(f"bank: a transfer succeeded during the outage: {receipt}")
    except Refused as err:
        elapsed = time.monotonic() - started
        if "Code: Unavailable" not in str(err):
            sys.exit(f"bank: with the outage, expected UNAVAILABLE, got: {err}")
        if elapsed > args.within:
            sys.exit(f"bank: UNAVAILABLE took {elapsed:.1f}s (more than {args.within}s)")
        message = str(err).splitlines()[-1].strip()
        say(f"{args.name}: UNAVAILABLE after {elapsed:.2f}s ({message})")
    state.setdefault("pending", {})[args.name] = body
    save_state(args.state, state)


def recover(args):
    """Retries the transfer refused during the outage, same request id, until it applies."""
    state = load_state(args.state)
    body = state["pending"][args.name]
    started = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        try:
            call(args.addr, "Transfer", body, state["session"], timeout=10)
            break
        except Refused as err:
            if time.monotonic() - started > args.within:
                sys.exit(f"bank: {args.name} did not recover within {args.within}s: {err}")
            if not any(code in str(err) for code in RETRYABLE):
                sys.exit(f"bank: {args.name} after the outage: {err}")
            time.sleep(0.5)
    say(f"{args.name}: recovered by itself, the refused transfer applied "
        f"{time.monotonic() - started:.1f}s after the outage ended ({attempts} attempts)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("setup")
    p.add_argument("state"), p.add_argument("admin_token_file")
    p.add_argument("addrs", nargs="+")
    p.set_defaults(func=setup)
    p = sub.add_parser("load")
    p.add_argument("state"), p.add_argument("addrs", nargs="+")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--transfers", type=int, default=25)
    p.add_argument("--attempts", type=int, default=10,
                   help="tries per transfer on UNAVAILABLE, DEADLINE_EXCEEDED or ABORTED "
                        "(pauses of 0.2s more each time, at most 1s)")
    p.set_defaults(func=load)
    p = sub.add_parser("total")
    p.add_argument("state"), p.add_argument("addrs", nargs="+")
    p.add_argument("--save", action="store_true"), p.add_argument("--expect-saved", action="store_true")
    p.set_defaults(func=total)
    for name, func, within in (("unavailable", unavailable, 6.0), ("recover", recover, 30.0)):
        p = sub.add_parser(name)
        p.add_argument("state"), p.add_argument("name"), p.add_argument("addr")
        p.add_argument("--within", type=float, default=within)
        p.set_defaults(func=func)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
