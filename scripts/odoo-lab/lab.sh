#!/usr/bin/env bash
# lab.sh COMMAND: a throwaway vanilla Odoo 18.0 on a throwaway PostgreSQL 15,
# loopback only, to record what real Odoo writes (see testdata/odoo18/README.md).
#
#   sudo bash scripts/odoo-lab/lab.sh pg-init   # cluster under $LAB/pg (wal_level=logical, log_statement=all)
#   sudo bash scripts/odoo-lab/lab.sh install   # role odoo, odoo.conf, -i base,contacts,sale_management
#   sudo bash scripts/odoo-lab/lab.sh dump OUT  # pg_dump of erp (schema + data, no owner/privileges), gzip
#   sudo bash scripts/odoo-lab/lab.sh serve     # odoo in the background (log: $LAB/home/odoo.log)
#   sudo bash scripts/odoo-lab/lab.sh stop      # stop odoo (by its pid file), then PostgreSQL
#   sudo bash scripts/odoo-lab/lab.sh psql ARGS # psql as the odoo role on erp
#
# Prerequisite: the source tree and Debian packages from /work/shared/odoo18/setup.sh:
#   ODOO_GIT=/work/.mirror/Disassembling-Odoo+core/repo ODOO_SRC=$LAB/src bash setup.sh
# Run as root: PostgreSQL runs as the `postgres` OS user, Odoo as the `odoolab` OS user
# (PostgreSQL refuses root; Odoo warns about root and refuses the postgres role).
set -euo pipefail
LAB=${LAB:-/work/odoo-lab}
SRC=${ODOO_SRC:-$LAB/src}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PGPORT=${PGPORT:-55432}
HTTP_PORT=${HTTP_PORT:-18069}
ODOO_USER=${ODOO_USER:-odoolab}
PY=/usr/bin/python3 # Debian's: the dependencies are installed for it
PGDATA=$LAB/pg/data
CONF=$LAB/odoo.conf

as_pg() { runuser -u postgres -- "$@"; }
as_odoo() { runuser -u "$ODOO_USER" -- "$@"; }
psql_su() { as_pg "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PGPORT" -U postgres -v ON_ERROR_STOP=1 "$@"; }

pg_init() {
  mkdir -p "$LAB/pg"
  chown postgres: "$LAB/pg"
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >>"$PGDATA/postgresql.conf" <<EOF
# odoo-lab
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$LAB/pg'
wal_level = logical
max_wal_senders = 4
max_replication_slots = 4
log_statement = 'all'
# time, pid, session id, virtual xid, xid: which backend and transaction sent each statement
log_line_prefix = '%m [%p] %c %v %x %u@%d '
logging_collector = on
log_directory = '$LAB/pg/log'
log_filename = 'pg.log'
# jsonlog carries the same fields (session_id, vxid, txid) and keeps multi-line statements whole
log_destination = 'stderr,jsonlog'
log_rotation_age = 0
log_rotation_size = 0
timezone = 'UTC'
log_timezone = 'UTC'
EOF
  fi
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -w -l "$LAB/pg/start.log" start >/dev/null
  psql_su -d postgres -c "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='odoo') THEN CREATE ROLE odoo LOGIN CREATEDB; END IF; END\$\$"
  echo "PostgreSQL 15 on 127.0.0.1:$PGPORT, data $PGDATA, statement log $LAB/pg/log/pg.json"
}

write_conf() {
  id "$ODOO_USER" >/dev/null 2>&1 || useradd --system --home-dir "$LAB/home" --shell /usr/sbin/nologin "$ODOO_USER"
  mkdir -p "$LAB/data" "$LAB/home"
  chown "$ODOO_USER": "$LAB/data" "$LAB/home"
  cat >"$CONF" <<EOF
[options]
db_host = 127.0.0.1
db_port = $PGPORT
db_user = odoo
db_password = False
data_dir = $LAB/data
addons_path = $SRC/addons,$SRC/odoo/addons
http_interface = 127.0.0.1
http_port = $HTTP_PORT
proxy_mode = True
workers = 0
max_cron_threads = 0
list_db = False
dbfilter = ^erp\$
admin_passwd = lab-only-master-password
EOF
  chmod 644 "$CONF"
}

install() {
  write_conf
  as_odoo $PY "$SRC/odoo-bin" -c "$CONF" -d erp -i base,contacts,sale_management \
    --without-demo=all --stop-after-init --logfile "$LAB/home/install.log"
  echo "installed: $(psql_su -d erp -Atc 'SELECT count(*) FROM ir_module_module WHERE state = $$installed$$') modules"
}

dump() {
  local out=${1:?dump OUT.sql.gz}
  as_pg "$PGBIN/pg_dump" -h 127.0.0.1 -p "$PGPORT" -U postgres --no-owner --no-privileges erp | gzip -9n >"$out"
  echo "dumped erp into $out ($(du -h "$out" | cut -f1))"
}

serve() {
  write_conf
  as_odoo bash -c "exec $PY '$SRC/odoo-bin' -c '$CONF' -d erp --logfile '$LAB/home/odoo.log' >/dev/null 2>&1 & echo \$! >'$LAB/home/odoo.pid'"
  for _ in $(seq 120); do
    curl -fs -o /dev/null "http://127.0.0.1:$HTTP_PORT/web/login" && { echo "odoo on http://127.0.0.1:$HTTP_PORT (pid $(cat "$LAB/home/odoo.pid"))"; return; }
    sleep 1
  done
  echo "odoo did not answer; see $LAB/home/odoo.log" >&2
  exit 1
}

stop() {
  if [ -f "$LAB/home/odoo.pid" ]; then
    kill "$(cat "$LAB/home/odoo.pid")" 2>/dev/null || true
    rm -f "$LAB/home/odoo.pid"
  fi
  [ -f "$PGDATA/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null || true
}

case ${1:-} in
pg-init) pg_init ;;
install) install ;;
dump) dump "${2:-}" ;;
serve) serve ;;
stop) stop ;;
psql) shift; as_pg "$PGBIN/psql" -X -h 127.0.0.1 -p "$PGPORT" -U odoo -d erp "$@" ;;
*) sed -n '2,15p' "$0"; exit 2 ;;
esac
