#!/usr/bin/env python3
"""end-check.py: a session ended by cdcaudit is really logged out of a real Odoo 18.

Run by live-check.sh (step 3d) while `cdcaudit run` follows the lab with
session_store set to Odoo's session directory:
  end-check.py ODOO_URL API_URL VIEWER_TOKEN CDCAUDIT_BIN DATA_DIR SESSION_DIR

carol signs in to Odoo as a browser does; once cdcaudit shows her new session,
`cdcaudit sessions end ID` (through the daemon's socket) ends it; her browser's
next request must be refused by Odoo, her session file must be gone, her
device-log rows revoked (arriving in the stream as a change of cdcaudit's),
and cdcaudit must show the session ended `terminated`. Exit status 1 on any
failed check. Nothing secret is printed: session ids only as cdcaudit's
pseudonyms, files only counted.
"""
import http.cookiejar, json, os, subprocess, sys, time, urllib.request

odoo, api, token, binary, data, sessdir = sys.argv[1:7]
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:134.0) Gecko/20100101 Firefox/134.0"
failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


jar = http.cookiejar.CookieJar()
browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))


def rpc(path, params):
    req = urllib.request.Request(odoo + path, data=json.dumps({"jsonrpc": "2.0", "method": "call", "params": params}).encode(),
                                 headers={"Content-Type": "application/json", "User-Agent": UA})
    with browser.open(req, timeout=60) as res:
        return json.loads(res.read())


def api_get(path):
    req = urllib.request.Request(api + path, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=60) as res:
        return json.loads(res.read())


def session_files():
    return sum(len(files) for _, _, files in os.walk(sessdir))


started = time.time()
answer = rpc("/web/session/authenticate", {"db": "erp", "login": "carol", "password": "carol-lab-pw-1"})
check(answer.get("result", {}).get("uid"), "carol signs in to Odoo (uid %s)" % answer.get("result", {}).get("uid"))
info = rpc("/web/session/get_session_info", {})
check(info.get("result", {}).get("uid"), "her next request is served as her")

# cdcaudit sees her new session: Odoo's device-log row, and the watched store.
session = None
for _ in range(120):
    for s in api_get("/api/v1/sessions?user=carol&limit=100")["sessions"]:
        if s.get("browser") == "firefox" and s.get("state") == "active":
            session = s
    if session:
        break
    time.sleep(1)
check(session is not None, "cdcaudit shows carol's new Firefox session: %s" % (session or {}).get("id"))
if not session:
    sys.exit(1)

before = session_files()
run = subprocess.run([binary, "sessions", "end", session["id"], "--data-dir", data], capture_output=True, text=True, timeout=120)
print(run.stdout.strip())
check(run.returncode == 0, "cdcaudit sessions end %s: exit %d %s" % (session["id"], run.returncode, run.stderr.strip()))
check(session_files() < before, "her session file is gone (%d files, %d before)" % (session_files(), before))

refused = rpc("/web/session/get_session_info", {})
err = refused.get("error") or {}
check(err.get("code") == 100 or not (refused.get("result") or {}).get("uid"),
      "her browser's next request is refused by Odoo: %s" % (err.get("message") or refused.get("result")))

ended = None
for _ in range(60):
    ended = next((s for s in api_get("/api/v1/sessions?user=carol&limit=100")["sessions"] if s["id"] == session["id"]), None)
    if ended and ended.get("state") == "ended":
        break
    time.sleep(1)
check(bool(ended) and ended.get("end_reason") == "terminated", "cdcaudit shows it ended: %s %s" % ((ended or {}).get("state"), (ended or {}).get("end_reason")))

revokes = []
for _ in range(30):
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started - 1))
    events = api_get("/api/v1/events?table=res_device_log&op=update&limit=1000&since=" + since)["events"]
    revokes = [e for e in events if (e.get("after") or {}).get("revoked") in (True, "t", "true")]
    if revokes:
        break
    time.sleep(1)
check(bool(revokes), "her device-log rows revoked, in the stream: %d update(s)" % len(revokes))
for e in revokes:
    a = e["actor"]
    check(a.get("user_via") == "message" and "cdcaudit" in (e.get("flags") or []),
          "the revoke arrives as cdcaudit's change: user %s via %s, flags %s" % (a.get("login"), a.get("user_via"), e.get("flags")))

print("end-check: %s" % ("OK" if not failures else "%d FAILED" % len(failures)))
sys.exit(1 if failures else 0)
