-- An Odoo 18.0 database in miniature: the tables cdcaudit's attribution
-- reads (users, logins, device logs, API keys, groups, models, parameters)
-- and a few business tables (partners, sales orders and their lines).
--
-- Written from Odoo 18.0's own definitions (odoo/addons/base/data/
-- base_data.sql, the ORM's column types, res_device.py, res_users.py,
-- auth_totp, sale) and from ../../shared/ODOO.md. Each table keeps the
-- columns cdcaudit reads and a representative share of the others, with
-- Odoo's types: Char → varchar, Text/Html → text, translated Char → jsonb,
-- Datetime → timestamp without time zone (UTC), Monetary and Float with
-- digits → numeric, Float without digits → double precision, Many2one →
-- integer with a foreign key (ON DELETE SET NULL unless the field says
-- otherwise).
--
-- The canonical copy of this file is internal/odoosim/schema.sql (embedded
-- by package odoosim, which the tests and `cdcaudit demo` use);
-- testdata/odoo18/schema.sql is the same file, checked byte for byte by
-- odoosim's tests.
--
-- REPLICA IDENTITY FULL on every table: Odoo does not set it (its tables
-- have the default, the primary key; testdata/odoo18/erp.sql.gz is a real
-- database with that default), but cdcaudit needs complete before-images:
-- without them an update's `changed` list cannot be known, a delete's event
-- carries only the id, and the orm_bypass rule cannot see that write_date
-- stayed as it was. `cdcaudit check` recommends it for every published
-- table; this fixture is set up the way the docs tell an operator to set up
-- a real Odoo database.
--
-- Every column here exists in a real Odoo 18.0 with the same type and
-- nullability: TestSchemaMatchesRealOdoo checks it against
-- testdata/odoo18/schema-columns.tsv, recorded from one (scripts/odoo-lab).
--
-- The audit columns (create_uid, create_date, write_uid, write_date) are
-- on every table the ORM creates; Odoo adds the res_users foreign keys of
-- create_uid/write_uid once res_users exists, hence the ALTER TABLEs at the
-- end of the file. Tables created by raw SQL (res_users_apikeys) or many2many relation
-- tables (res_groups_users_rel) have none.

SET client_min_messages = warning;

-- res.users (base). login is unique; password holds the passlib hash
-- ($pbkdf2-sha512$600000$salt$checksum) written by a raw UPDATE
-- (res_users._set_encrypted_password); totp_secret (auth_totp) holds the
-- plain base32 secret, also written by a raw UPDATE.
CREATE TABLE res_users (
    id                serial PRIMARY KEY,
    company_id        integer NOT NULL DEFAULT 1,  -- res_company: not part of this fixture
    partner_id        integer NOT NULL,            -- FK below (res_partner is created after)
    active            boolean DEFAULT true,
    login             varchar NOT NULL,
    password          varchar DEFAULT NULL,
    action_id         integer,
    signature         text,
    share             boolean,
    notification_type varchar NOT NULL DEFAULT 'email',
    totp_secret       varchar,
    create_uid        integer,
    create_date       timestamp without time zone,
    write_uid         integer,
    write_date        timestamp without time zone,
    CONSTRAINT res_users_login_key UNIQUE (login)
);
COMMENT ON TABLE res_users IS 'res.users';

-- res.partner (base, with a few fields of account and sale).
CREATE TABLE res_partner (
    id                      serial PRIMARY KEY,
    name                    varchar,
    complete_name           varchar,
    company_id              integer,
    parent_id               integer REFERENCES res_partner(id) ON DELETE SET NULL,
    commercial_partner_id   integer REFERENCES res_partner(id) ON DELETE SET NULL,
    user_id                 integer,  -- salesperson, FK below
    ref                     varchar,
    lang                    varchar,
    tz                      varchar,
    vat                     varchar,
    website                 varchar,
    comment                 text,
    type                    varchar DEFAULT 'contact',
    street                  varchar,
    zip                     varchar,
    city                    varchar,
    country_id              integer,  -- res_country: not part of this fixture (Odoo's ids: BE 20, US 233, …)
    email                   varchar,
    phone                   varchar,
    mobile                  varchar,
    is_company              boolean DEFAULT false,
    active                  boolean DEFAULT true,
    partner_share           boolean,
    credit_limit            jsonb,    -- company_dependent (account): {"<company id>": value}
    create_uid              integer,
    create_date             timestamp without time zone,
    write_uid               integer,
    write_date              timestamp without time zone
);
COMMENT ON TABLE res_partner IS 'res.partner';

ALTER TABLE res_users ADD CONSTRAINT res_users_partner_id_fkey
    FOREIGN KEY (partner_id) REFERENCES res_partner(id) ON DELETE RESTRICT;
ALTER TABLE res_partner ADD CONSTRAINT res_partner_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES res_users(id) ON DELETE SET NULL;

-- res.groups: name is a translated Char (jsonb).
CREATE TABLE res_groups (
    id           serial PRIMARY KEY,
    name         jsonb NOT NULL,
    comment      jsonb,
    category_id  integer,
    color        integer,
    share        boolean,
    create_uid   integer,
    create_date  timestamp without time zone,
    write_uid    integer,
    write_date   timestamp without time zone
);
COMMENT ON TABLE res_groups IS 'res.groups';

-- The many2many of res.users.groups_id / res.groups.users: no id, no audit
-- columns; the ORM writes it with INSERT … ON CONFLICT DO NOTHING and
-- DELETE, in the transaction that writes the owning record.
CREATE TABLE res_groups_users_rel (
    gid integer NOT NULL REFERENCES res_groups(id) ON DELETE CASCADE,
    uid integer NOT NULL REFERENCES res_users(id) ON DELETE CASCADE,
    PRIMARY KEY (gid, uid)
);
CREATE INDEX res_groups_users_rel_uid_gid_idx ON res_groups_users_rel (uid, gid);
COMMENT ON TABLE res_groups_users_rel IS 'RELATION BETWEEN res_groups AND res_users';

-- res.users.log: one row per successful login, created by the ORM on a
-- cursor of its own with create_uid = the user who logged in. A cron
-- deletes all but each user's newest row.
CREATE TABLE res_users_log (
    id           serial PRIMARY KEY,
    create_uid   integer,
    create_date  timestamp without time zone,
    write_uid    integer,
    write_date   timestamp without time zone
);
COMMENT ON TABLE res_users_log IS 'res.users.log';

-- res.device.log (Odoo 18.0 and 19.0): a raw INSERT per session and device
-- (platform, browser, IP) when the device is new or its last trace is an
-- hour old, on the request's own cursor for read-write requests. The audit
-- columns stay NULL until an ORM write (revoked = true) stamps them.
-- session_identifier is the first 42 characters of the session id: a
-- credential.
CREATE TABLE res_device_log (
    id                  serial PRIMARY KEY,
    session_identifier  varchar NOT NULL,
    platform            varchar,
    browser             varchar,
    ip_address          varchar,
    country             varchar,
    city                varchar,
    device_type         varchar,  -- 'computer' | 'mobile'
    user_id             integer,  -- FK below
    first_activity      timestamp without time zone,
    last_activity       timestamp without time zone,
    revoked             boolean,
    create_uid          integer,
    create_date         timestamp without time zone,
    write_uid           integer,
    write_date          timestamp without time zone
);
CREATE INDEX res_device_log__session_identifier_index ON res_device_log (session_identifier);
CREATE INDEX res_device_log__user_id_index ON res_device_log (user_id);
CREATE INDEX res_device_log__last_activity_index ON res_device_log (last_activity);
CREATE INDEX res_device_log__composite_idx ON res_device_log
    (user_id, session_identifier, platform, browser, last_activity, id) WHERE revoked = false;
COMMENT ON TABLE res_device_log IS 'res.device.log';

-- res.device: the latest non-revoked log of each device (a view, _auto = False).
CREATE VIEW res_device AS (
    SELECT D.* FROM res_device_log D
    WHERE NOT EXISTS (
        SELECT 1 FROM res_device_log D2
        WHERE D2.user_id = D.user_id
          AND D2.session_identifier = D.session_identifier
          AND D2.platform IS NOT DISTINCT FROM D.platform
          AND D2.browser IS NOT DISTINCT FROM D.browser
          AND (D2.last_activity > D.last_activity
               OR (D2.last_activity = D.last_activity AND D2.id > D.id))
          AND D2.revoked = false)
      AND D.revoked = false
);

-- res.users.apikeys: created by raw SQL (_auto = False) so that the key
-- column exists only in the database. index is the first 8 characters of
-- the plain key (a lookup prefix); key is its pbkdf2-sha512 hash (6000
-- rounds). No write_uid/write_date.
CREATE TABLE res_users_apikeys (
    id               serial PRIMARY KEY,
    name             varchar NOT NULL,
    user_id          integer NOT NULL REFERENCES res_users(id) ON DELETE CASCADE,
    scope            varchar,
    expiration_date  timestamp without time zone,
    index            varchar(8) CHECK (char_length(index) = 8),
    key              varchar,
    create_date      timestamp without time zone DEFAULT (now() at time zone 'utc')
);
CREATE INDEX res_users_apikeys_user_id_index_idx ON res_users_apikeys (user_id, index);

-- sale.order (sale).
CREATE SEQUENCE ir_sequence_sale_order;
CREATE TABLE sale_order (
    id                   serial PRIMARY KEY,
    name                 varchar NOT NULL,
    state                varchar,  -- draft | sent | sale | cancel
    partner_id           integer NOT NULL REFERENCES res_partner(id) ON DELETE RESTRICT,
    partner_invoice_id   integer NOT NULL REFERENCES res_partner(id) ON DELETE RESTRICT,
    partner_shipping_id  integer NOT NULL REFERENCES res_partner(id) ON DELETE RESTRICT,
    user_id              integer REFERENCES res_users(id) ON DELETE SET NULL,
    company_id           integer NOT NULL DEFAULT 1,
    currency_id          integer,
    date_order           timestamp without time zone NOT NULL,
    validity_date        date,
    client_order_ref     varchar,
    origin               varchar,
    note                 text,
    amount_untaxed       numeric,
    amount_tax           numeric,
    amount_total         numeric,
    invoice_status       varchar,
    locked               boolean,
    create_uid           integer,
    create_date          timestamp without time zone,
    write_uid            integer,
    write_date           timestamp without time zone
);
CREATE INDEX sale_order__partner_id_index ON sale_order (partner_id);
COMMENT ON TABLE sale_order IS 'sale.order';

-- sale.order.line (sale): lines go with their order (ondelete cascade).
CREATE TABLE sale_order_line (
    id               serial PRIMARY KEY,
    order_id         integer NOT NULL REFERENCES sale_order(id) ON DELETE CASCADE,
    sequence         integer,
    name             text NOT NULL,
    product_id       integer,
    product_uom_qty  numeric NOT NULL,
    price_unit       numeric NOT NULL,
    discount         numeric,
    price_subtotal   numeric,
    price_tax        double precision,
    price_total      numeric,
    state            varchar,
    display_type     varchar,
    company_id       integer,
    currency_id      integer,
    create_uid       integer,
    create_date      timestamp without time zone,
    write_uid        integer,
    write_date       timestamp without time zone
);
CREATE INDEX sale_order_line__order_id_index ON sale_order_line (order_id);
COMMENT ON TABLE sale_order_line IS 'sale.order.line';

-- ir.model: the registry of models; model is unique ('sale.order'), name is
-- translated (jsonb). A model's table is the model with '.' → '_' unless
-- the model sets _table.
CREATE TABLE ir_model (
    id           serial PRIMARY KEY,
    model        varchar NOT NULL,
    name         jsonb NOT NULL,
    "order"      varchar NOT NULL DEFAULT 'id',
    info         text,
    state        varchar DEFAULT 'manual',
    transient    boolean,
    create_uid   integer,
    create_date  timestamp without time zone,
    write_uid    integer,
    write_date   timestamp without time zone,
    CONSTRAINT ir_model_obj_name_uniq UNIQUE (model)
);
COMMENT ON TABLE ir_model IS 'ir.model';

-- ir.model.fields: one row per field; relation_table/column1/column2 name
-- a many2many's table and its columns.
CREATE TABLE ir_model_fields (
    id                 serial PRIMARY KEY,
    name               varchar NOT NULL,
    complete_name      varchar,
    model              varchar NOT NULL,
    relation           varchar,
    relation_field     varchar,
    model_id           integer NOT NULL REFERENCES ir_model(id) ON DELETE CASCADE,
    field_description  jsonb NOT NULL,
    help               jsonb,
    ttype              varchar NOT NULL,
    state              varchar NOT NULL DEFAULT 'base',
    on_delete          varchar DEFAULT 'set null',
    related            varchar,
    readonly           boolean,
    required           boolean,
    index              boolean,
    translate          boolean,
    copied             boolean,
    store              boolean DEFAULT true,
    relation_table     varchar,
    column1            varchar,
    column2            varchar,
    compute            text,
    depends            varchar,
    tracking           integer,
    create_uid         integer,
    create_date        timestamp without time zone,
    write_uid          integer,
    write_date         timestamp without time zone,
    CONSTRAINT ir_model_fields_name_unique UNIQUE (model, name)
);
COMMENT ON TABLE ir_model_fields IS 'ir.model.fields';

-- ir.config_parameter: key/value settings; 'database.secret' signs
-- sessions and tokens.
CREATE TABLE ir_config_parameter (
    id           serial PRIMARY KEY,
    key          varchar NOT NULL,
    value        text NOT NULL,
    create_uid   integer,
    create_date  timestamp without time zone,
    write_uid    integer,
    write_date   timestamp without time zone,
    CONSTRAINT ir_config_parameter_key_uniq UNIQUE (key)
);
COMMENT ON TABLE ir_config_parameter IS 'ir.config_parameter';

-- Odoo's transient wizards that hold typed passwords and secrets in plain
-- text for a moment (base, auth_totp), and the mail tables a contact's
-- delete touches (mail). Columns, types, nullability, keys and indexes as
-- `pg_dump -s -t` prints them from a real Odoo 18.0 with base, contacts and
-- sale_management (testdata/odoo18/schema-columns.tsv lists them all);
-- foreign keys to tables this fixture lacks (res_company, res_currency,
-- mail_message_subtype, mail_activity_type, mail_guest, ir_mail_server,
-- mail_alias_domain) are left out.

-- change.password.own: the "Change password" of a user's preferences.
CREATE TABLE change_password_own (
    id                serial PRIMARY KEY,
    create_uid        integer REFERENCES res_users(id) ON DELETE SET NULL,
    write_uid         integer REFERENCES res_users(id) ON DELETE SET NULL,
    new_password      varchar,
    confirm_password  varchar,
    create_date       timestamp without time zone,
    write_date        timestamp without time zone
);
COMMENT ON TABLE change_password_own IS 'User, change own password wizard';

-- change.password.wizard and its lines change.password.user: an
-- administrator sets other users' passwords.
CREATE TABLE change_password_wizard (
    id           serial PRIMARY KEY,
    create_uid   integer REFERENCES res_users(id) ON DELETE SET NULL,
    write_uid    integer REFERENCES res_users(id) ON DELETE SET NULL,
    create_date  timestamp without time zone,
    write_date   timestamp without time zone
);
COMMENT ON TABLE change_password_wizard IS 'Change Password Wizard';

CREATE TABLE change_password_user (
    id           serial PRIMARY KEY,
    wizard_id    integer NOT NULL REFERENCES change_password_wizard(id) ON DELETE CASCADE,
    user_id      integer NOT NULL REFERENCES res_users(id) ON DELETE CASCADE,
    create_uid   integer REFERENCES res_users(id) ON DELETE SET NULL,
    write_uid    integer REFERENCES res_users(id) ON DELETE SET NULL,
    user_login   varchar,
    new_passwd   varchar,
    create_date  timestamp without time zone,
    write_date   timestamp without time zone
);
COMMENT ON TABLE change_password_user IS 'User, Change Password Wizard';

-- res.users.identitycheck: "confirm your password" before a guarded
-- action (@check_identity: own password change, API key, revoking a device).
CREATE TABLE res_users_identitycheck (
    id           serial PRIMARY KEY,
    create_uid   integer REFERENCES res_users(id) ON DELETE SET NULL,
    write_uid    integer REFERENCES res_users(id) ON DELETE SET NULL,
    request      varchar,
    auth_method  varchar,
    password     varchar,
    create_date  timestamp without time zone,
    write_date   timestamp without time zone
);
COMMENT ON TABLE res_users_identitycheck IS 'Password Check Wizard';

-- auth.totp.wizard (auth_totp, installed with base): the TOTP secret
-- being set up, in plain base32.
CREATE TABLE auth_totp_wizard (
    id           serial PRIMARY KEY,
    user_id      integer NOT NULL REFERENCES res_users(id) ON DELETE CASCADE,
    create_uid   integer REFERENCES res_users(id) ON DELETE SET NULL,
    write_uid    integer REFERENCES res_users(id) ON DELETE SET NULL,
    secret       varchar NOT NULL,
    url          varchar,
    code         varchar(7),
    create_date  timestamp without time zone,
    write_date   timestamp without time zone,
    qrcode       bytea
);
COMMENT ON TABLE auth_totp_wizard IS '2-Factor Setup Wizard';

-- mail.message: chatter messages and tracking; res_id/model name the record.
CREATE TABLE mail_message (
    id                      serial PRIMARY KEY,
    parent_id               integer REFERENCES mail_message(id) ON DELETE SET NULL,
    res_id                  integer,
    record_alias_domain_id  integer,
    record_company_id       integer,
    subtype_id              integer,
    mail_activity_type_id   integer,
    author_id               integer REFERENCES res_partner(id) ON DELETE SET NULL,
    author_guest_id         integer,
    mail_server_id          integer,
    create_uid              integer REFERENCES res_users(id) ON DELETE SET NULL,
    write_uid               integer REFERENCES res_users(id) ON DELETE SET NULL,
    subject                 varchar,
    model                   varchar,
    record_name             varchar,
    message_type            varchar NOT NULL,
    email_from              varchar,
    message_id              varchar,
    reply_to                varchar,
    email_layout_xmlid      varchar,
    body                    text,
    is_internal             boolean,
    reply_to_force_new      boolean,
    email_add_signature     boolean,
    date                    timestamp without time zone,
    pinned_at               timestamp without time zone,
    create_date             timestamp without time zone,
    write_date              timestamp without time zone
);
CREATE INDEX mail_message__author_id_index ON mail_message (author_id);
CREATE INDEX mail_message__mail_activity_type_id_index ON mail_message (mail_activity_type_id) WHERE mail_activity_type_id IS NOT NULL;
CREATE INDEX mail_message__message_id_index ON mail_message (message_id);
CREATE INDEX mail_message__parent_id_index ON mail_message (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX mail_message__subtype_id_index ON mail_message (subtype_id);
CREATE INDEX mail_message_model_res_id_id_idx ON mail_message (model, res_id, id);
CREATE INDEX mail_message_model_res_id_idx ON mail_message (model, res_id);
COMMENT ON TABLE mail_message IS 'Message';

-- mail.mail: an outgoing e-mail of a message (e.g. the "Security Update"
-- mail Odoo sends in the transaction that changes a password or turns on
-- two-factor authentication).
CREATE TABLE mail_mail (
    id                   serial PRIMARY KEY,
    mail_message_id      integer NOT NULL REFERENCES mail_message(id) ON DELETE CASCADE,
    fetchmail_server_id  integer,
    create_uid           integer REFERENCES res_users(id) ON DELETE SET NULL,
    write_uid            integer REFERENCES res_users(id) ON DELETE SET NULL,
    email_cc             varchar,
    state                varchar,
    failure_type         varchar,
    body_html            text,
    "references"         text,
    headers              text,
    email_to             text,
    failure_reason       text,
    is_notification      boolean,
    auto_delete          boolean,
    scheduled_date       timestamp without time zone,
    create_date          timestamp without time zone,
    write_date           timestamp without time zone
);
CREATE INDEX mail_mail__mail_message_id_index ON mail_mail (mail_message_id);
COMMENT ON TABLE mail_mail IS 'Outgoing Mails';

-- mail.followers: who follows which record; no audit columns.
CREATE TABLE mail_followers (
    id          serial PRIMARY KEY,
    res_id      integer,
    partner_id  integer NOT NULL REFERENCES res_partner(id) ON DELETE CASCADE,
    res_model   varchar NOT NULL,
    CONSTRAINT mail_followers_mail_followers_res_partner_res_model_id_uniq UNIQUE (res_model, res_id, partner_id)
);
CREATE INDEX mail_followers__partner_id_index ON mail_followers (partner_id);
CREATE INDEX mail_followers__res_id_index ON mail_followers (res_id);
CREATE INDEX mail_followers__res_model_index ON mail_followers (res_model);
COMMENT ON TABLE mail_followers IS 'Document Followers';

CREATE TABLE mail_followers_mail_message_subtype_rel (
    mail_followers_id        integer NOT NULL REFERENCES mail_followers(id) ON DELETE CASCADE,
    mail_message_subtype_id  integer NOT NULL,
    PRIMARY KEY (mail_followers_id, mail_message_subtype_id)
);
CREATE INDEX mail_followers_mail_message_s_mail_message_subtype_id_mail__idx
    ON mail_followers_mail_message_subtype_rel (mail_message_subtype_id, mail_followers_id);
COMMENT ON TABLE mail_followers_mail_message_subtype_rel IS 'RELATION BETWEEN mail_followers AND mail_message_subtype';

-- mail.tracking.value: a tracked field's old and new value, per message.
CREATE TABLE mail_tracking_value (
    id                  serial PRIMARY KEY,
    field_id            integer REFERENCES ir_model_fields(id) ON DELETE SET NULL,
    old_value_integer   integer,
    new_value_integer   integer,
    currency_id         integer,
    mail_message_id     integer NOT NULL REFERENCES mail_message(id) ON DELETE CASCADE,
    create_uid          integer REFERENCES res_users(id) ON DELETE SET NULL,
    write_uid           integer REFERENCES res_users(id) ON DELETE SET NULL,
    old_value_char      varchar,
    new_value_char      varchar,
    field_info          jsonb,
    old_value_text      text,
    new_value_text      text,
    old_value_datetime  timestamp without time zone,
    new_value_datetime  timestamp without time zone,
    create_date         timestamp without time zone,
    write_date          timestamp without time zone,
    old_value_float     double precision,
    new_value_float     double precision
);
CREATE INDEX mail_tracking_value__field_id_index ON mail_tracking_value (field_id);
CREATE INDEX mail_tracking_value__mail_message_id_index ON mail_tracking_value (mail_message_id);
COMMENT ON TABLE mail_tracking_value IS 'Mail Tracking Value';

-- Complete before-images (see the top of the file).
ALTER TABLE res_users            REPLICA IDENTITY FULL;
ALTER TABLE res_partner          REPLICA IDENTITY FULL;
ALTER TABLE res_groups           REPLICA IDENTITY FULL;
ALTER TABLE res_groups_users_rel REPLICA IDENTITY FULL;
ALTER TABLE res_users_log        REPLICA IDENTITY FULL;
ALTER TABLE res_device_log       REPLICA IDENTITY FULL;
ALTER TABLE res_users_apikeys    REPLICA IDENTITY FULL;
ALTER TABLE sale_order           REPLICA IDENTITY FULL;
ALTER TABLE sale_order_line      REPLICA IDENTITY FULL;
ALTER TABLE ir_model             REPLICA IDENTITY FULL;
ALTER TABLE ir_model_fields      REPLICA IDENTITY FULL;
ALTER TABLE ir_config_parameter  REPLICA IDENTITY FULL;
ALTER TABLE change_password_own  REPLICA IDENTITY FULL;
ALTER TABLE change_password_wizard REPLICA IDENTITY FULL;
ALTER TABLE change_password_user REPLICA IDENTITY FULL;
ALTER TABLE res_users_identitycheck REPLICA IDENTITY FULL;
ALTER TABLE auth_totp_wizard     REPLICA IDENTITY FULL;
ALTER TABLE mail_message         REPLICA IDENTITY FULL;
ALTER TABLE mail_mail            REPLICA IDENTITY FULL;
ALTER TABLE mail_followers       REPLICA IDENTITY FULL;
ALTER TABLE mail_followers_mail_message_subtype_rel REPLICA IDENTITY FULL;
ALTER TABLE mail_tracking_value  REPLICA IDENTITY FULL;

---------------------------------------------------------------------------
-- Data: what a fresh Odoo 18 database with Sales installed and three
-- salespeople looks like. Written as at install time: create_uid and
-- write_uid are the superuser (1, __system__), timestamps fixed.
---------------------------------------------------------------------------

INSERT INTO res_partner (id, name, complete_name, company_id, is_company, active, email, city, country_id, partner_share, create_uid, create_date, write_uid, write_date) VALUES
    (1,  'YourCompany',           'YourCompany',           1,    true,  true,  'info@yourcompany.com', 'Brussels', 20,   false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (2,  'OdooBot',               'OdooBot',               NULL, false, false, 'odoobot@example.com',  NULL,       NULL, false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (3,  'Mitchell Admin',        'Mitchell Admin',        1,    false, true,  'admin@yourcompany.example.com', 'Brussels', 20,   false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (4,  'Default User Template', 'Default User Template', 1,    false, false, NULL,                   NULL,       NULL, false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (5,  'Public user',           'Public user',           1,    false, false, NULL,                   NULL,       NULL, true,  1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (6,  'Joel Willis',           'Joel Willis',           1,    false, true,  'joel.willis63@example.com', 'Tracy', 233,  true, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (7,  'Alice Martin',          'Alice Martin',          1,    false, true,  'alice@example.com',    'Lyon',     75,   false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (8,  'Bob Dupont',            'Bob Dupont',            1,    false, true,  'bob@example.com',      'Namur',    20,   false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (9,  'Carol Nguyen',          'Carol Nguyen',          1,    false, true,  'carol@example.com',    'Ghent',    20,   false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (10, 'Azure Interior',        'Azure Interior',        NULL, true,  true,  'azure.interior24@example.com', 'Fremont', 233,  true, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (11, 'Deco Addict',           'Deco Addict',           NULL, true,  true,  'deco_addict@example.com', 'Pleasant Hill', 233,  true, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (12, 'Gemini Furniture',      'Gemini Furniture',      NULL, true,  true,  'gemini_furniture@example.com', 'Fairfield', 233,  true, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (13, 'Lumber Inc',            'Lumber Inc',            NULL, true,  true,  'lumber-inv92@example.com', 'Stockton', 233,  true, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (14, 'Wood Corner',           'Wood Corner',           NULL, true,  true,  'wood.corner26@example.com', 'Turlock', 233,  true, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00');
UPDATE res_partner SET commercial_partner_id = id;
SELECT setval('res_partner_id_seq', 14);

-- Users: 1 __system__ (the superuser, inactive), 2 admin, 3 the default
-- template, 4 public, 5 a portal user, 6-8 three salespeople. carol has
-- two-factor authentication on.
INSERT INTO res_users (id, login, partner_id, active, share, password, totp_secret, create_uid, create_date, write_uid, write_date) VALUES
    (1, '__system__',        2, false, false, NULL, NULL, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (2, 'admin',             3, true,  false, '$pbkdf2-sha512$600000$YRBPfWj.UtTNr0q51xu04A$pUZ51O44LDAexUBrCDbIYZYgj7t8kyCJ/RMdwuoWKXljaLuzEMip/gtlHfzWKKu6qsNTgm56vXD4h5uR1w.aeQ', NULL, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (3, 'default',           4, false, false, NULL, NULL, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (4, 'public',            5, false, true,  NULL, NULL, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (5, 'portal',            6, true,  true,  '$pbkdf2-sha512$600000$VGt2eUmSU3/1Ip7QrLFwZw$0lsVuHkZCycWzV.EnrmLpydJEfCYX.XKPSDRqtjJK765AOd.fEd0J83ctZSk/QeFaryK6dn7VCehNk1.nQl0JA', NULL, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (6, 'alice@example.com', 7, true,  false, '$pbkdf2-sha512$600000$RlH/b8xyPkz6n0.S4hYM8A$25ivD9VdVqCmjPYNgztDFXAtQ6EyFNvhS.6GVAqY.j.6pnL13hod96o1wlEi5xwQ7e1UUhuhBdko/RqQbj5sLQ', NULL, 2, '2026-01-05 08:10:00', 2, '2026-01-05 08:10:00'),
    (7, 'bob@example.com',   8, true,  false, '$pbkdf2-sha512$600000$XKaS2QWp5SuGYFscv7o0Tg$se.JKxWM3J6tbkNA796NIhyxsjBSybdvq0UuLTWP2Y9yqPMoLFfV/JaUNxA75BAsHUJVhux4JNFRC9/.NJEDDg', NULL, 2, '2026-01-05 08:10:00', 2, '2026-01-05 08:10:00'),
    (8, 'carol@example.com', 9, true,  false, '$pbkdf2-sha512$600000$y9YdztTriN.2.KcW5cLbIg$ZElAXB9L78e/0G9/zCJQJTc3kTnkv/lJNyd.IJxbGHoeZblkQMni/.OM3xOATr1ZnarP9aIdK/aqLYZobQFMCA', 'O2W6CVBGXYG6HTBGSU2NAKKLZT23CNRM', 2, '2026-01-05 08:10:00', 2, '2026-01-05 08:10:00');
SELECT setval('res_users_id_seq', 8);
UPDATE res_partner SET user_id = 6 WHERE id IN (10, 11);
UPDATE res_partner SET user_id = 7 WHERE id IN (12, 13);
UPDATE res_partner SET user_id = 8 WHERE id = 14;

INSERT INTO res_groups (id, name, share, create_uid, create_date, write_uid, write_date) VALUES
    (1, '{"en_US": "Internal User"}',                      false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (2, '{"en_US": "Access Rights"}',                      false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (3, '{"en_US": "Settings"}',                           false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (4, '{"en_US": "Portal"}',                             true,  1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (5, '{"en_US": "Public"}',                             true,  1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (6, '{"en_US": "User: Own Documents Only"}',           false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (7, '{"en_US": "User: All Documents"}',                false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (8, '{"en_US": "Administrator"}',                      false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00');
SELECT setval('res_groups_id_seq', 8);

INSERT INTO res_groups_users_rel (gid, uid) VALUES
    (1, 1), (2, 1), (3, 1), (6, 1), (7, 1), (8, 1),
    (1, 2), (2, 2), (3, 2), (6, 2), (7, 2), (8, 2),
    (1, 3),
    (5, 4),
    (4, 5),
    (1, 6), (6, 6), (7, 6),
    (1, 7), (6, 7),
    (1, 8), (6, 8), (7, 8), (8, 8);

INSERT INTO res_users_log (create_uid, create_date, write_uid, write_date) VALUES
    (2, '2026-01-05 08:05:00', 2, '2026-01-05 08:05:00');

INSERT INTO ir_config_parameter (key, value, create_uid, create_date, write_uid, write_date) VALUES
    ('database.secret',      'a39c6fa2-7d4e-4b1f-9e0b-5c2d8f7a6e13', 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    ('database.uuid',        '4f1eb375-4447-5398-0693-d76cf8e89875', 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    ('database.create_date', '2026-01-05 08:00:00',                  1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    ('web.base.url',         'http://localhost:8069',                1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    ('base.login_cooldown_after', '10',                              1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00');

INSERT INTO ir_model (id, model, name, "order", state, transient, create_uid, create_date, write_uid, write_date) VALUES
    (1,  'ir.model',            '{"en_US": "Models"}',               'model',                 'base', false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (2,  'ir.model.fields',     '{"en_US": "Fields"}',               'id',                    'base', false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (3,  'ir.config_parameter', '{"en_US": "System Parameter"}',     'key',                   'base', false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (4,  'res.partner',         '{"en_US": "Contact"}',              'complete_name ASC, id DESC', 'base', false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (5,  'res.users',           '{"en_US": "User"}',                 'name, login',           'base', false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (6,  'res.groups',          '{"en_US": "Access Groups"}',        'name',                  'base', false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (7,  'res.users.log',       '{"en_US": "Users Log"}',            'id desc',               'base', false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (8,  'res.device.log',      '{"en_US": "Device Log"}',           'id',                    'base', false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (9,  'res.device',          '{"en_US": "Devices"}',              'last_activity desc',    'base', false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (10, 'res.users.apikeys',   '{"en_US": "Users API Keys"}',       'id',                    'base', false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (11, 'sale.order',          '{"en_US": "Sales Order"}',          'date_order desc, id desc', 'base', false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (12, 'sale.order.line',     '{"en_US": "Sales Order Line"}',     'order_id, sequence, id', 'base', false, 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00');
SELECT setval('ir_model_id_seq', 12);

INSERT INTO ir_model_fields (model_id, model, name, complete_name, field_description, ttype, relation, relation_table, column1, column2, store, on_delete, create_uid, create_date, write_uid, write_date) VALUES
    (5,  'res.users',       'login',        'res.users.login',        '{"en_US": "Login"}',          'char',      NULL,          NULL,                   NULL,  NULL,  true,  NULL,       1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (5,  'res.users',       'password',     'res.users.password',     '{"en_US": "Password"}',       'char',      NULL,          NULL,                   NULL,  NULL,  false, NULL,       1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (5,  'res.users',       'partner_id',   'res.users.partner_id',   '{"en_US": "Related Partner"}', 'many2one', 'res.partner', NULL,                   NULL,  NULL,  true,  'restrict', 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (5,  'res.users',       'groups_id',    'res.users.groups_id',    '{"en_US": "Groups"}',         'many2many', 'res.groups',  'res_groups_users_rel', 'uid', 'gid', true,  NULL,       1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (5,  'res.users',       'totp_secret',  'res.users.totp_secret',  '{"en_US": "Totp Secret"}',    'char',      NULL,          NULL,                   NULL,  NULL,  false, NULL,       1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (6,  'res.groups',      'name',         'res.groups.name',        '{"en_US": "Name"}',           'char',      NULL,          NULL,                   NULL,  NULL,  true,  NULL,       1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (6,  'res.groups',      'users',        'res.groups.users',       '{"en_US": "Users"}',          'many2many', 'res.users',   'res_groups_users_rel', 'gid', 'uid', true,  NULL,       1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (4,  'res.partner',     'name',         'res.partner.name',       '{"en_US": "Name"}',           'char',      NULL,          NULL,                   NULL,  NULL,  true,  NULL,       1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (4,  'res.partner',     'email',        'res.partner.email',      '{"en_US": "Email"}',          'char',      NULL,          NULL,                   NULL,  NULL,  true,  NULL,       1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (4,  'res.partner',     'user_id',      'res.partner.user_id',    '{"en_US": "Salesperson"}',    'many2one',  'res.users',   NULL,                   NULL,  NULL,  true,  'set null', 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (8,  'res.device.log',  'session_identifier', 'res.device.log.session_identifier', '{"en_US": "Session Identifier"}', 'char', NULL, NULL,       NULL,  NULL,  true,  NULL,       1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (8,  'res.device.log',  'user_id',      'res.device.log.user_id', '{"en_US": "User"}',           'many2one',  'res.users',   NULL,                   NULL,  NULL,  true,  'set null', 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (8,  'res.device.log',  'revoked',      'res.device.log.revoked', '{"en_US": "Revoked"}',        'boolean',   NULL,          NULL,                   NULL,  NULL,  true,  NULL,       1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (11, 'sale.order',      'name',         'sale.order.name',        '{"en_US": "Order Reference"}', 'char',     NULL,          NULL,                   NULL,  NULL,  true,  NULL,       1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (11, 'sale.order',      'state',        'sale.order.state',       '{"en_US": "Status"}',         'selection', NULL,          NULL,                   NULL,  NULL,  true,  NULL,       1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (11, 'sale.order',      'partner_id',   'sale.order.partner_id',  '{"en_US": "Customer"}',       'many2one',  'res.partner', NULL,                   NULL,  NULL,  true,  'restrict', 1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (11, 'sale.order',      'amount_total', 'sale.order.amount_total', '{"en_US": "Total"}',         'monetary',  NULL,          NULL,                   NULL,  NULL,  true,  NULL,       1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (11, 'sale.order',      'order_line',   'sale.order.order_line',  '{"en_US": "Order Lines"}',    'one2many',  'sale.order.line', NULL,               NULL,  NULL,  false, NULL,       1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (12, 'sale.order.line', 'order_id',     'sale.order.line.order_id', '{"en_US": "Order Reference"}', 'many2one', 'sale.order', NULL,                   NULL,  NULL,  true,  'cascade',  1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (12, 'sale.order.line', 'product_uom_qty', 'sale.order.line.product_uom_qty', '{"en_US": "Quantity"}', 'float', NULL,   NULL,                   NULL,  NULL,  true,  NULL,       1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (12, 'sale.order.line', 'price_unit',   'sale.order.line.price_unit', '{"en_US": "Unit Price"}', 'float',     NULL,          NULL,                   NULL,  NULL,  true,  NULL,       1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (10, 'res.users.apikeys', 'name',       'res.users.apikeys.name', '{"en_US": "Description"}',    'char',      NULL,          NULL,                   NULL,  NULL,  true,  NULL,       1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (3,  'ir.config_parameter', 'key',      'ir.config_parameter.key', '{"en_US": "Key"}',           'char',      NULL,          NULL,                   NULL,  NULL,  true,  NULL,       1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00'),
    (3,  'ir.config_parameter', 'value',    'ir.config_parameter.value', '{"en_US": "Value"}',       'text',      NULL,          NULL,                   NULL,  NULL,  true,  NULL,       1, '2026-01-05 08:00:00', 1, '2026-01-05 08:00:00');

-- A few orders, created and last written by their salespeople.
INSERT INTO sale_order (id, name, state, partner_id, partner_invoice_id, partner_shipping_id, user_id, currency_id, date_order, note, amount_untaxed, amount_tax, amount_total, invoice_status, locked, create_uid, create_date, write_uid, write_date) VALUES
    (1, 'S00001', 'draft', 10, 10, 10, 6, 1, '2026-01-12 09:14:00', NULL,                     1070.00, 224.70, 1294.70, 'no',         false, 6, '2026-01-12 09:14:00', 6, '2026-01-12 09:14:00'),
    (2, 'S00002', 'sent',  11, 11, 11, 6, 1, '2026-01-13 10:02:00', 'Deliver before noon',    2350.00, 493.50, 2843.50, 'no',         false, 6, '2026-01-13 10:02:00', 6, '2026-01-13 10:05:00'),
    (3, 'S00003', 'sale',  12, 12, 12, 7, 1, '2026-01-14 14:40:00', NULL,                      640.00, 134.40,  774.40, 'to invoice', false, 7, '2026-01-14 14:40:00', 7, '2026-01-14 15:00:00'),
    (4, 'S00004', 'draft', 14, 14, 14, 8, 1, '2026-01-15 11:20:00', 'Customer asked for a discount', 316.00, 66.36, 382.36, 'no', false, 8, '2026-01-15 11:20:00', 8, '2026-01-15 11:20:00');
SELECT setval('sale_order_id_seq', 4);
SELECT setval('ir_sequence_sale_order', 4);

INSERT INTO sale_order_line (order_id, sequence, name, product_uom_qty, price_unit, discount, price_subtotal, price_tax, price_total, state, company_id, currency_id, create_uid, create_date, write_uid, write_date) VALUES
    (1, 10, '[FURN_7800] Desk Combination',   2, 450.00, 0, 900.00, 189.0,  1089.00, 'draft', 1, 1, 6, '2026-01-12 09:14:00', 6, '2026-01-12 09:14:00'),
    (1, 20, '[FURN_0269] Office Chair Black',  1, 170.00, 0, 170.00, 35.7,   205.70,  'draft', 1, 1, 6, '2026-01-12 09:14:00', 6, '2026-01-12 09:14:00'),
    (2, 10, '[FURN_8220] Four Person Desk',    1, 2350.00, 0, 2350.00, 493.5, 2843.50, 'sent', 1, 1, 6, '2026-01-13 10:02:00', 6, '2026-01-13 10:02:00'),
    (3, 10, '[E-COM07] Large Cabinet',         2, 320.00, 0, 640.00, 134.4,  774.40,  'sale',  1, 1, 7, '2026-01-14 14:40:00', 7, '2026-01-14 14:40:00'),
    (4, 10, '[FURN_6666] Acoustic Bloc Screens', 1, 295.00, 0, 295.00, 61.95, 356.95, 'draft', 1, 1, 8, '2026-01-15 11:20:00', 8, '2026-01-15 11:20:00'),
    (4, 20, '[FURN_0001] Drawer Black',        1, 21.00, 0, 21.00, 4.41,     25.41,   'draft', 1, 1, 8, '2026-01-15 11:20:00', 8, '2026-01-15 11:20:00');

-- The audit columns' foreign keys, added (as by the ORM) once the users
-- they point to exist.
ALTER TABLE res_users           ADD FOREIGN KEY (create_uid) REFERENCES res_users(id) ON DELETE SET NULL,
                                ADD FOREIGN KEY (write_uid)  REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE res_partner         ADD FOREIGN KEY (create_uid) REFERENCES res_users(id) ON DELETE SET NULL,
                                ADD FOREIGN KEY (write_uid)  REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE res_groups          ADD FOREIGN KEY (create_uid) REFERENCES res_users(id) ON DELETE SET NULL,
                                ADD FOREIGN KEY (write_uid)  REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE res_users_log       ADD FOREIGN KEY (create_uid) REFERENCES res_users(id) ON DELETE SET NULL,
                                ADD FOREIGN KEY (write_uid)  REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE res_device_log      ADD FOREIGN KEY (user_id)    REFERENCES res_users(id) ON DELETE SET NULL,
                                ADD FOREIGN KEY (create_uid) REFERENCES res_users(id) ON DELETE SET NULL,
                                ADD FOREIGN KEY (write_uid)  REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE sale_order          ADD FOREIGN KEY (create_uid) REFERENCES res_users(id) ON DELETE SET NULL,
                                ADD FOREIGN KEY (write_uid)  REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE sale_order_line     ADD FOREIGN KEY (create_uid) REFERENCES res_users(id) ON DELETE SET NULL,
                                ADD FOREIGN KEY (write_uid)  REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE ir_model            ADD FOREIGN KEY (create_uid) REFERENCES res_users(id) ON DELETE SET NULL,
                                ADD FOREIGN KEY (write_uid)  REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE ir_model_fields     ADD FOREIGN KEY (create_uid) REFERENCES res_users(id) ON DELETE SET NULL,
                                ADD FOREIGN KEY (write_uid)  REFERENCES res_users(id) ON DELETE SET NULL;
ALTER TABLE ir_config_parameter ADD FOREIGN KEY (create_uid) REFERENCES res_users(id) ON DELETE SET NULL,
                                ADD FOREIGN KEY (write_uid)  REFERENCES res_users(id) ON DELETE SET NULL;
