-- Every PostgreSQL type the event format cares about, for the differential
-- test against test_decoding (internal/e2e). dt has REPLICA IDENTITY FULL,
-- dd the default; both carry a TOASTable column stored out of line.
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'it''s "complicated"');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TYPE pair AS (n int, s text);
CREATE TABLE dt (
	id        int PRIMARY KEY,
	c_int2    int2,
	c_int4    int4,
	c_int8    int8,
	c_num     numeric,
	c_f4      float4,
	c_f8      float8,
	c_bool    bool,
	c_text    text,
	c_vc      varchar(20),
	c_ch      char(5),
	c_bytea   bytea,
	c_date    date,
	c_time    time,
	c_timetz  timetz,
	c_ts      timestamp,
	c_tstz    timestamptz,
	c_iv      interval,
	c_uuid    uuid,
	c_json    json,
	c_jsonb   jsonb,
	c_inet    inet,
	c_enum    mood,
	c_dom     posint,
	c_ia      int[],
	c_ta      text[],
	c_range   int4range,
	c_oid     oid,
	c_comp    pair,
	c_tsv     tsvector,
	c_point   point,
	c_big     text
);
ALTER TABLE dt REPLICA IDENTITY FULL;
-- No compression: the 1 MB value is stored out of line as it is.
ALTER TABLE dt ALTER c_big SET STORAGE EXTERNAL;
CREATE TABLE dd (id int PRIMARY KEY, note text, big text, "Wéird ""col"", name" text);
ALTER TABLE dd ALTER big SET STORAGE EXTERNAL;
