"""A recording stand-in for a MongoDB replica set, for tests/data_mongo.rs.

No mongod is obtainable from any registry this project builds with, so the init Job's script
(src/render/scripts/mongo-init.js) runs in the real mongosh against this fake: one MockupDB
wire-protocol server per member, sharing one replica-set state. It answers what the script
and mongosh's driver send (hello, SCRAM-SHA-256, replSet*, usersInfo, createUser,
updateUser), enforces the rules a real set would reject a script for breaking (authentication
before anything privileged, initiate once, version + 1 and one voting member changed per
reconfig, only on the primary, a primary never removing itself), and records every command
with the member it reached.

    python fake_replica_set.py SERVERS
Environment: ROOT_USERNAME, ROOT_PASSWORD (the user the image's entrypoint would create).
stdout: first line {"hosts": ["localhost:PORT", ...]}; then, for each line read on stdin:
  "dump"  -> one JSON line: the commands recorded since the last dump, then the state
  "quit"  -> exit
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
import threading

from bson import Binary
from mockupdb import MockupDB

# Every key a client adds to each command and that says nothing about what the script asked.
DRIVER_KEYS = {"$db", "lsid", "$clusterTime", "$readPreference", "txnNumber", "apiVersion"}
UNAUTHENTICATED = {"hello", "ismaster", "saslstart", "saslcontinue", "ping", "buildinfo", "endsessions"}
WIRE_VERSION = 21  # MongoDB 7.0


class ReplicaSet:
    def __init__(self, hosts, username, password):
        self.hosts = hosts
        self.username = username
        self.password = password
        self.lock = threading.Lock()
        self.config = None
        self.primary = None
        self.users = {}  # "db.user" -> {"user", "db", "roles", "pwd"}
        self.log = []
        self.authenticated = set()  # (host, client port)
        self.conversations = {}  # (host, client port) -> SCRAM state

    # -- replica-set view -------------------------------------------------------------------
    def member(self, host):
        if self.config is None:
            return None
        return next((m for m in self.config["members"] if m["host"] == host), None)

    def hello(self, host, legacy):
        reply = {
            "helloOk": True,
            "maxWireVersion": WIRE_VERSION,
            "minWireVersion": 0,
            "maxBsonObjectSize": 16 * 1024 * 1024,
            "maxMessageSizeBytes": 48000000,
            "maxWriteBatchSize": 100000,
            "logicalSessionTimeoutMinutes": 30,
        }
        writable = False
        member = self.member(host)
        if member is None:
            # A mongod started with --replSet and no config yet (or removed from it).
            reply["isreplicaset"] = True
            reply["secondary"] = False
        else:
            writable = host == self.primary
            reply.update(
                {
                    "setName": self.config["_id"],
                    "setVersion": self.config["version"],
                    "hosts": [m["host"] for m in self.config["members"] if not m.get("arbiterOnly")],
                    "arbiters": [m["host"] for m in self.config["members"] if m.get("arbiterOnly")],
                    "me": host,
                    "secondary": not writable and not member.get("arbiterOnly"),
                    "arbiterOnly": bool(member.get("arbiterOnly")),
                }
            )
            if self.primary is not None:
                reply["primary"] = self.primary
        reply["ismaster" if legacy else "isWritablePrimary"] = writable
        return reply

    def voters(self, config):
        return sum(1 for m in config["members"] if m.get("votes", 1) > 0)

    def check_one_voter_change(self, old, new):
        old_by_host = {m["host"]: m for m in old["members"]}
        new_by_host = {m["host"]: m for m in new["members"]}
        changed = 0
        for host in set(old_by_host) | set(new_by_host):
            a, b = old_by_host.get(host), new_by_host.get(host)
            if a is None or b is None:
                changed += 1 if (a or b).get("votes", 1) > 0 else 0
            elif a.get("votes", 1) != b.get("votes", 1):
                changed += 1
            elif a["_id"] != b["_id"]:
                return "a member's _id cannot change"
        if changed > 1:
            return "only one voting member can be added or removed per reconfig"
        if not 1 <= self.voters(new) <= 7:
            return "a replica set needs 1 to 7 voting members"
        return None

    # -- commands ---------------------------------------------------------------------------
    def handle(self, host, request):
        name = request.command_name
        if name is None:
            return request.fail("only commands are expected", code=2)
        doc = {k: v for k, v in request.doc.items() if k not in DRIVER_KEYS}
        key = name.lower()
        # Fire-and-forget (moreToCome, e.g. endSessions with w:0): the client reads no reply.
        no_reply = bool(getattr(request, "flags", 0) & 2)
        conn = (host, request.client_port)
        with self.lock:
            if key in ("hello", "ismaster"):
                reply = self.hello(host, legacy=key == "ismaster")
                if "saslSupportedMechs" in doc:
                    reply["saslSupportedMechs"] = ["SCRAM-SHA-256"]
                return request.ok(reply)
            if key == "saslstart":
                return self.sasl_start(conn, request, doc)
            if key == "saslcontinue":
                return self.sasl_continue(conn, request, doc)
            if key in ("ping", "endsessions"):
                return True if no_reply else request.ok()
            if key == "buildinfo":
                return request.ok(version="7.0.14", versionArray=[7, 0, 14, 0])
            if conn not in self.authenticated:
                self.record(host, name, doc, rejected="unauthenticated")
                return request.fail("command requires authentication", code=13, codeName="Unauthorized")
            self.record(host, name, doc)
            handler = getattr(self, "cmd_" + key, None)
            if handler is None:
                return request.fail(f"no such command: '{name}'", code=59, codeName="CommandNotFound")
            error = handler(host, doc, request)
            if error is not None:
                self.log[-1]["rejected"] = error[1]
                return request.fail(error[1], code=error[0])
            return True

    def record(self, host, name, doc, rejected=None):
        entry = {"host": host, "command": name, "doc": to_json(doc)}
        if rejected is not None:
            entry["rejected"] = rejected
        self.log.append(entry)

    def cmd_replsetinitiate(self, host, doc, request):
        if self.config is not None:
            return 23, "already initialized"
        config = doc["replSetInitiate"]
        if self.member(host) is None and host not in [m["host"] for m in config["members"]]:
            return 93, "the member receiving replSetInitiate must be in the config"
        self.config = dict(to_json(config), version=1, term=1)
        # The member that was asked becomes primary, as a lone electable member would.
        self.primary = host
        request.ok()

    def cmd_replsetgetconfig(self, host, doc, request):
        if self.config is None:
            return 94, "no replica set config"
        request.ok(config=self.config)

    def cmd_replsetreconfig(self, host, doc, request):
        if host != self.primary:
            return 10107, "not primary"
        new = to_json(doc["replSetReconfig"])
        if new.get("version") != self.config["version"] + 1:
            return 103, f"version must be {self.config['version'] + 1}"
        if not any(m["host"] == host for m in new["members"]):
            return 103, "the primary cannot remove itself"
        error = self.check_one_voter_change(self.config, new)
        if error:
            return 103, error
        self.config = dict(new, term=self.config["term"])
        request.ok()

    def cmd_replsetgetstatus(self, host, doc, request):
        if self.config is None:
            return 94, "no replica set config"

        def state(m):
            if m.get("arbiterOnly"):
                return "ARBITER"
            return "PRIMARY" if m["host"] == self.primary else "SECONDARY"

        members = [{"_id": m["_id"], "name": m["host"], "stateStr": state(m)} for m in self.config["members"]]
        request.ok(set=self.config["_id"], members=members)

    def cmd_replsetstepdown(self, host, doc, request):
        if host != self.primary:
            return 10107, "not primary"
        electable = [
            m for m in self.config["members"]
            if m["host"] != host and m.get("priority", 1) > 0 and not m.get("arbiterOnly")
        ]
        if not electable:
            return 262, "no electable secondary"
        self.primary = min(electable, key=lambda m: m["_id"])["host"]
        request.ok()

    def cmd_usersinfo(self, host, doc, request):
        wanted = doc["usersInfo"]
        found = [
            {k: v for k, v in u.items() if k != "pwd"}
            for u in self.users.values()
            if isinstance(wanted, dict) and u["user"] == wanted.get("user") and u["db"] == wanted.get("db")
        ]
        request.ok(users=found)

    def cmd_createuser(self, host, doc, request):
        if host != self.primary:
            return 10107, "not primary"
        key = f"{request.namespace}.{doc['createUser']}"
        if key in self.users:
            return 51003, f"User \"{doc['createUser']}@{request.namespace}\" already exists"
        self.users[key] = {"user": doc["createUser"], "db": request.namespace, "roles": doc["roles"], "pwd": doc["pwd"]}
        request.ok()

    def cmd_updateuser(self, host, doc, request):
        if host != self.primary:
            return 10107, "not primary"
        key = f"{request.namespace}.{doc['updateUser']}"
        if key not in self.users:
            return 11, f"User {doc['updateUser']}@{request.namespace} not found"
        user = self.users[key]
        for field in ("roles", "pwd"):
            if field in doc:
                user[field] = doc[field]
        request.ok()

    # -- SCRAM-SHA-256 (RFC 7677), server side, for the root user only ------------------------
    def sasl_start(self, conn, request, doc):
        if doc.get("mechanism") != "SCRAM-SHA-256":
            return request.fail("only SCRAM-SHA-256", code=334)
        client_first = bytes(doc["payload"]).decode()
        bare = client_first.split(",", 2)[2]
        attrs = dict(part.split("=", 1) for part in bare.split(","))
        self.record(conn[0], "saslStart", {"mechanism": doc["mechanism"], "user": attrs["n"]})
        salt = secrets.token_bytes(16)
        nonce = attrs["r"] + base64.b64encode(secrets.token_bytes(18)).decode()
        server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i=4096"
        self.conversations[conn] = {"user": attrs["n"], "bare": bare, "server_first": server_first, "salt": salt}
        return request.ok(conversationId=1, done=False, payload=Binary(server_first.encode()))

    def sasl_continue(self, conn, request, doc):
        state = self.conversations.pop(conn, None)
        if state is None:
            return request.fail("no SASL conversation", code=17)
        client_final = bytes(doc["payload"]).decode()
        without_proof, proof = client_final.rsplit(",p=", 1)
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), state["salt"], 4096)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        auth_message = f"{state['bare']},{state['server_first']},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        expected = bytes(a ^ b for a, b in zip(client_key, signature))
        if state["user"] != self.username or base64.b64decode(proof) != expected:
            self.record(conn[0], "saslContinue", {"user": state["user"]}, rejected="authentication failed")
            return request.fail("Authentication failed.", code=18, codeName="AuthenticationFailed")
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        server_signature = base64.b64encode(hmac.new(server_key, auth_message, hashlib.sha256).digest()).decode()
        self.authenticated.add(conn)
        return request.ok(conversationId=1, done=True, payload=Binary(f"v={server_signature}".encode()))

    def dump(self):
        with self.lock:
            log, self.log = self.log, []
            users = [{k: v for k, v in u.items()} for u in self.users.values()]
            return {"commands": log, "config": self.config, "primary": self.primary, "users": users}


def to_json(value):
    """BSON values as plain JSON (Int64 and friends become numbers, SON becomes dicts)."""
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


def main():
    count = int(sys.argv[1])
    servers = [MockupDB(port=0) for _ in range(count)]
    ports = [server.run() for server in servers]
    hosts = [f"localhost:{port}" for port in ports]
    state = ReplicaSet(hosts, os.environ["ROOT_USERNAME"], os.environ["ROOT_PASSWORD"])
    for server, host in zip(servers, hosts):
        server.autoresponds(lambda request, host=host: state.handle(host, request))
    print(json.dumps({"hosts": hosts}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "dump":
            print(json.dumps(state.dump()), flush=True)
        elif command == "quit":
            break
    for server in servers:
        server.stop()


if __name__ == "__main__":
    main()
