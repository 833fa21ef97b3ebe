#!/usr/bin/env python3
"""api-check.py: the auditor's desk against the users of a real, running Odoo 18.

Run by live-check.sh while `cdcaudit run` follows the lab's database (step 3c):
  api-check.py BASE_URL VIEWER_TOKEN OUT_DIR ALICE_TOTP_SECRET

It signs in with the passwords Odoo itself hashed (the lab's driver set them
through Odoo's own forms), with the TOTP secret Odoo's auth_totp wizard
stored, and checks roles, self isolation, an export with its manifest and
the access log. Every answer is saved under OUT_DIR/api/ so the secret search
of step 4 reads them too. Exit status 1 on any failed check.
"""
import base64, hashlib, hmac, http.cookiejar, json, os, struct, sys, time, urllib.error, urllib.request

base, viewer_token, out, alice_totp = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
os.makedirs(os.path.join(out, "api"), exist_ok=True)
failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


class Client:
    def __init__(self, token=None):
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.token, self.csrf = token, None

    def call(self, method, path, body=None, save=None):
        req = urllib.request.Request(base + path, method=method)
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        if self.csrf and method != "GET":
            req.add_header("X-CSRF-Token", self.csrf)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            req.add_header("Content-Type", "application/json")
        try:
            res = self.opener.open(req, data, timeout=120)
            status, headers, raw = res.status, res.headers, res.read()
        except urllib.error.HTTPError as e:
            status, headers, raw = e.code, e.headers, e.read()
        if save:
            with open(os.path.join(out, "api", save), "wb") as f:
                f.write(raw)
        return status, headers, raw

    def json(self, path, save=None):
        status, _, raw = self.call("GET", path, save=save)
        return status, (json.loads(raw) if raw[:1] in (b"{", b"[") else None)

    def signin(self, login, password, totp=None):
        body = {"login": login, "password": password}
        if totp:
            body["totp"] = totp
        status, _, raw = self.call("POST", "/api/v1/signin", body)
        answer = json.loads(raw) if raw else {}
        if status == 200:
            self.csrf = answer.pop("csrf_token", None)  # kept, never printed
        return status, answer


def totp(secret, at):
    key = base64.b32decode(secret.replace(" ", "").upper() + "=" * (-len(secret.replace(" ", "")) % 8))
    digest = hmac.new(key, struct.pack(">Q", int(at) // 30), hashlib.sha1).digest()
    o = digest[-1] & 15
    return "%06d" % ((struct.unpack(">I", digest[o:o + 4])[0] & 0x7FFFFFFF) % 1000000)


# No credentials: every route is 401.
for path in ("/api/v1/events", "/api/v1/sessions", "/api/v1/whoami", "/api/v1/export?format=csv"):
    status, _, _ = Client().call("GET", path)
    check(status == 401, f"no credentials: {path} is 401 (got {status})")

viewer = Client(viewer_token)
status, who = viewer.json("/api/v1/whoami")
check(status == 200 and who["role"] == "viewer", f"viewer token: whoami {status} {who}")

# Passwords Odoo hashed itself.
admin = Client()
status, who = admin.signin("admin", "admin")
check(status == 200 and who.get("role") == "admin", f"admin/admin signs in as admin (Settings group): {status} {who.get('role')}")
status, who = Client().signin("bob", "not-bobs-password")
check(status == 401, f"bob with a wrong password: 401 (got {status})")
status, who = Client().signin("bob", "bob-lab-pw-1")
check(status == 401, f"bob with his old password (admin changed it in Odoo): 401 (got {status})")
bob = Client()
status, who = bob.signin("bob", "bob-lab-pw-2")
check(status == 200 and who.get("role") == "self", f"bob signs in with the password admin set in Odoo, role self (sales manager, not Settings): {status} {who}")
status, who = Client().signin("alice", "alice-lab-pw-2")
check(status == 401 and who.get("totp_required") is True, f"alice (TOTP on in Odoo) without a code: 401 totp_required (got {status} {who})")
status, who = Client().signin("alice", "alice-lab-pw-2", "000000" if totp(alice_totp, time.time()) != "000000" else "111111")
check(status == 401, f"alice with a wrong code: 401 (got {status})")
alice = Client()
status, who = alice.signin("alice", "alice-lab-pw-2", totp(alice_totp, time.time()))
check(status == 200 and who.get("role") == "self", f"alice with password and the current TOTP code of her Odoo secret: {status} {who}")
status, who = Client().signin("nobody-such", "x")
check(status == 401, f"an unknown login: 401 (got {status})")

# What each sees.
status, all_count = admin.json("/api/v1/events/count")
status_b, bob_count = bob.json("/api/v1/events/count")
check(status == 200 and status_b == 200 and 0 < bob_count["count"] < all_count["count"],
      f"counts: admin sees {all_count}, bob {bob_count}")
cursor, seen, foreign = "", 0, 0
while True:
    status, page = bob.json("/api/v1/events?limit=1000" + ("&cursor=" + cursor if cursor else ""))
    if status != 200:
        check(False, f"bob's events: {status}")
        break
    for e in page["events"]:
        seen += 1
        if (e.get("actor") or {}).get("login") != "bob":
            foreign += 1
    cursor = page["next_cursor"]
    if not cursor:
        break
check(seen == bob_count["count"] and foreign == 0, f"bob lists {seen} events, {foreign} of another user")
status, sessions = bob.json("/api/v1/sessions?limit=1000", save="bob-sessions.json")
check(status == 200 and sessions["sessions"] and all(s["login"] == "bob" for s in sessions["sessions"]),
      f"bob's sessions: {status}, {len(sessions['sessions']) if sessions else 0}, all his")
status, asess = admin.json("/api/v1/sessions?limit=1000", save="admin-sessions.json")
logins = sorted({s["login"] for s in asess["sessions"]})
check(status == 200 and {"alice", "bob", "carol", "admin"} <= set(logins), f"admin's sessions: the users {logins}")
other = next(s["id"] for s in asess["sessions"] if s["login"] != "bob")
status, _, _ = bob.call("GET", "/api/v1/sessions/" + other)
check(status == 404, f"bob asks for {other}, another user's session: 404 (got {status})")
status, users = admin.json("/api/v1/users", save="users.json")
check(status == 200, f"users: {[u['login'] for u in users['users']] if users else status}")

# An export with its manifest, for verify --export after the stop.
status, headers, body = admin.call("GET", "/api/v1/export?format=jsonl&table=res_partner")
check(status == 200 and body, f"admin exports res_partner: {status}, {len(body)} bytes")
with open(os.path.join(out, "api-export.jsonl"), "wb") as f:
    f.write(body)
status, _, manifest = admin.call("GET", "/api/v1/exports/%s/manifest" % headers["X-Cdcaudit-Export"])
check(status == 200, f"its manifest: {status}")
with open(os.path.join(out, "api-export.manifest.json"), "wb") as f:
    f.write(manifest)
status, _, _ = bob.call("GET", "/api/v1/exports/%s/manifest" % headers["X-Cdcaudit-Export"])
check(status == 404, f"bob asks for admin's export manifest: 404 (got {status})")
status, _, _ = bob.call("GET", "/api/v1/access-log")
check(status in (403, 404), f"bob asks for the access log: refused (got {status})")

# The access log: sign-ins ok and refused, the export, no secret.
status, log = admin.json("/api/v1/access-log?limit=1000", save="access-log.json")
entries = log["entries"] if log else []
kinds = sorted({(e.get("action"), e.get("result")) for e in entries})
check(status == 200 and ("signin", "ok") in kinds and ("signin", "refused") in kinds and ("export", "ok") in kinds,
      f"access log: {len(entries)} entries, {kinds}")
status, _, _ = bob.call("POST", "/api/v1/signout")
check(status == 204, f"bob signs out: {status}")
status, _, _ = bob.call("GET", "/api/v1/whoami")
check(status == 401, f"bob after signing out: 401 (got {status})")

print("api-check: %s" % ("OK" if not failures else "%d FAILED" % len(failures)))
sys.exit(1 if failures else 0)
