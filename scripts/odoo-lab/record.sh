#!/usr/bin/env bash
# record.sh: rebuild testdata/odoo18's recordings from a fresh real Odoo 18.0.
#
#   sudo bash scripts/odoo-lab/record.sh     (from the repository root, as root)
#
# Wipes the lab ($LAB, default /work/odoo-lab: its pg/ and data/, not src/),
# installs base,contacts,sale_management, dumps the fresh database
# (erp.sql.gz), serves Odoo with the statement log starting empty, runs the
# scenarios of internal/odoolab, and writes traces/, sessions/, odoo.log and
# schema-columns.tsv. Prerequisite: /work/shared/odoo18/setup.sh (see lab.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
LAB=${LAB:-/work/odoo-lab}
OUT=testdata/odoo18
LABSH=scripts/odoo-lab/lab.sh
export LAB

bash $LABSH stop
rm -rf "$LAB/pg" "$LAB/data" "$LAB/run" "$LAB/home/odoo.log"
bash $LABSH pg-init
bash $LABSH install
bash $LABSH dump "$OUT/erp.sql.gz"
# Every column of every table of the freshly installed database (what
# erp.sql.gz holds), for tests that check the fixture against reality.
bash $LABSH psql -Atq -F $'\t' -c "
  SELECT c.table_name, c.column_name, c.data_type, c.is_nullable
  FROM information_schema.columns c
  JOIN information_schema.tables t USING (table_schema, table_name)
  WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
  ORDER BY 1, c.ordinal_position" |
  { printf 'table\tcolumn\ttype\tnullable\n'; cat; } >"$OUT/schema-columns.tsv"

# Start the statement log afresh: what follows the dump is what the traces replay.
PGLOG=$LAB/pg/log
mv "$PGLOG/pg.json" "$PGLOG/install.json"
mv "$PGLOG/pg.log" "$PGLOG/install.log"
runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$LAB/pg/data" logrotate >/dev/null
sleep 1

bash $LABSH serve
go run ./internal/odoolab drive -url "http://127.0.0.1:${HTTP_PORT:-18069}" \
  -sessions "$LAB/data/sessions" -out "$LAB/run" -psql "bash $LABSH psql"
sleep 1
kill "$(cat "$LAB/home/odoo.pid")"; rm -f "$LAB/home/odoo.pid"
go run ./internal/odoolab extract -pglog "$PGLOG/pg.json" -odoolog "$LAB/home/odoo.log" -run "$LAB/run" -out "$OUT"

echo "recorded into $OUT: $(du -sh "$OUT" | cut -f1)"
