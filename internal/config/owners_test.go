package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/anchor"
	"github.com/cdcaudit/cdcaudit/applog"
	"github.com/cdcaudit/cdcaudit/auth"
	"github.com/cdcaudit/cdcaudit/dbsessions"
	"github.com/cdcaudit/cdcaudit/internal/httpserver"
	"github.com/cdcaudit/cdcaudit/internal/logging"
	"github.com/cdcaudit/cdcaudit/kafkasink"
	"github.com/cdcaudit/cdcaudit/pgsink"
	"github.com/cdcaudit/cdcaudit/profile"
	"github.com/cdcaudit/cdcaudit/redact"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/rules"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
	"github.com/cdcaudit/cdcaudit/snapshot"
)

// The defaults are the owners' exported ones: a default written here again
// would drift from what the package using the value falls back to.
func TestDefaultsAreTheOwners(t *testing.T) {
	want := Config{
		HTTPAddr:        httpserver.DefaultAddr,
		Slot:            replication.DefaultSlot,
		Publication:     replication.DefaultPublication,
		StatusInterval:  replication.DefaultStatusInterval,
		LogFormat:       logging.DefaultFormat,
		LogLevel:        logging.DefaultLevel,
		Profile:         profile.DefaultChoice,
		IdleAfter:       sessions.DefaultIdleAfter,
		SessionLifetime: sessions.DefaultLifetime,
		Snapshot:        snapshot.DefaultMode,

		DBSessionsInterval: dbsessions.DefaultInterval,
		DBSessionsAppNames: dbsessions.DefaultAppNames,

		APISessionIdle:        auth.DefaultSessionIdle,
		APISessionLifetime:    auth.DefaultSessionLifetime,
		APISigninLimitLogin:   auth.DefaultLoginLimit.String(),
		APISigninLimitAddress: auth.DefaultAddressLimit.String(),

		FailedLoginBurst:     applog.DefaultBurst.String(),
		RuleMassChange:       rules.DefaultMassChange.String(),
		RuleImpossibleTravel: rules.DefaultTravel,
		RuleWorkingHours:     rules.Off,
		RuleSensitiveModels:  rules.DefaultSensitive,
		RuleBulkExport:       rules.DefaultBulkExport.String(),

		SMTPTLS:         alerts.TLSStartTLS,
		NewDeviceWindow: alerts.DefaultNewDeviceWindow,

		SinkPostgresTable:    pgsink.DefaultTable,
		SinkPostgresBatch:    pgsink.DefaultBatch,
		SinkKafkaTopic:       kafkasink.DefaultTopic,
		SinkKafkaTLS:         kafkasink.TLSOff,
		SinkKafkaCompression: kafkasink.DefaultCompression,
	}
	if got := Defaults(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Defaults() = %+v\nwant the owners' %+v", got, want)
	}
}

// A value its owner rejects is rejected by config with exactly the owner's
// message, the key and the source; a value the owner accepts is accepted.
// A rule duplicated here with its own wording or bounds fails this test.
func TestRulesAreTheOwners(t *testing.T) {
	long := strings.Repeat("p", 56)
	_, ruleErr := profile.ParseColumnRule("res_partner.vat")
	_, retentionErr := sink.ParseRetention("default=6m")
	for _, tc := range []struct {
		key, bad, good string
		owner          error // the owner's verdict on bad
	}{
		{KeyDSN, "postgres://u:s3cret@host:notaport/db", "host=db dbname=erp", replication.ValidateDSN("postgres://u:s3cret@host:notaport/db")},
		{KeyHTTPAddr, "127.0.0.1:99999", "[::1]:0", httpserver.ValidateAddr("127.0.0.1:99999")},
		{KeySlot, "My-Slot", strings.Repeat("s", 63), replication.ValidateSlotName("My-Slot")},
		{KeyPublication, long, long[1:], replication.ValidatePublicationName(long)},
		{KeyTables, ".sale_order", "*.sale_*", replication.ValidateTableGlob(".sale_order")},
		{KeyExclude, "public.[a", "public.a?", replication.ValidateTableGlob("public.[a")},
		{KeySnapshotTables, "sale_order", "public.sale_order", replication.ValidateTableGlob("sale_order")},
		{KeyStatusInterval, "9ms", "10ms", replication.ValidateStatusInterval(9 * time.Millisecond)},
		{KeyLogFormat, "xml", "json", logging.ValidateFormat("xml")},
		{KeyLogLevel, "INFO", "debug", logging.ValidateLevel("INFO")},
		{KeyProfile, "sap", "none", profile.ValidateChoice("sap", false)},
		{KeySnapshot, "always", "never", snapshot.ValidateMode("always")},
		{KeyIdleAfter, "25h", "1s", sessions.ValidateIdleAfter(25 * time.Hour)},
		{KeySessionLifetime, "5m", "5m1s", sessions.ValidateLifetime(5*time.Minute, sessions.DefaultIdleAfter)},
		{KeyRedact, "res_partner.vat", "*.*.vat[name=a|b]", ruleErr},
		{KeyRetention, "default=6m", "default=400d,mail_*=forever", retentionErr},
		{KeyFailedLoginBurst, "5", "off", validBurst("5")},
		{KeyRuleMassChange, "0/10m", "50/5m", validRate("0/10m")},
		{KeyRuleImpossibleTravel, "fast", "off", validSpeed("fast")},
		{KeyRuleWorkingHours, "group=Sales 8-19 UTC", "group=Sales Mon-Sat 08:00-19:00 Europe/Brussels", validHours("group=Sales 8-19 UTC")},
		{KeyRuleSensitiveModels, "DROP", "res.groups,account.move:post", validModels([]string{"DROP"})},
		{KeyDBSessionsInterval, "500ms", "0s", dbsessions.ValidateInterval(500 * time.Millisecond)},
		{KeyDBSessionsAppNames, "odoo-[", "odoo-*,erp", dbsessions.ValidateAppName("odoo-[")},
		{KeyDBSessionsAppAddrs, "10.0.0.0/33", "10.0.0.0/8,::1,local", dbsessions.ValidateAppAddr("10.0.0.0/33")},
		{KeySMTPTLS, "ssl", "implicit", alerts.ValidateTLSMode("ssl")},
		{KeySMTPAddr, "mail.example.com", "mail.example.com:465", alerts.ValidateSMTP("mail.example.com", alerts.TLSStartTLS)},
		{KeySMTPFrom, "Audit <a@example.com>", "a@example.com", alerts.ValidateAddress("Audit <a@example.com>")},
		{KeyAlertMailbox, "security", "security@example.com", alerts.ValidateAddress("security")},
		{KeyWebhookURL, "siem.example.com/hook", "https://siem.example.com/hook", alerts.ValidateWebhookURL("siem.example.com/hook")},
		{KeyAlertRoutes, "kind=new_device channel=sms", "", func() error { _, err := alerts.ParseRoutes("kind=new_device channel=sms"); return err }()},
		{KeyNewDeviceWindow, "30m", "720h", alerts.ValidateNewDeviceWindow(30 * time.Minute)},
	} {
		if tc.owner == nil {
			t.Fatalf("%s: the owner accepts %q", tc.key, tc.bad)
		}
		env := EnvName(tc.key)
		_, err := load(t, nil, map[string]string{env: tc.bad})
		if want := "config: " + tc.key + ": " + tc.owner.Error() + " (from " + env + ")"; err == nil || err.Error() != want {
			t.Errorf("%s=%q:\n got %v\nwant %s", env, tc.bad, err, want)
		}
		if _, err := load(t, []string{"--" + FlagName(tc.key), tc.good}, nil); err != nil {
			t.Errorf("--%s %q: %v", FlagName(tc.key), tc.good, err)
		}
	}
}

// The same holds for the files the configuration names.
func TestFileRulesAreTheOwners(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("s3cret\n"), 0o600)
	_, keyErr := redact.ReadKeyFile(short)
	_, secretErr := alerts.ReadSecretFile(short, alerts.MinSecretLen)
	empty := filepath.Join(dir, "empty.mmdb")
	os.WriteFile(empty, nil, 0o600)
	data := filepath.Join(dir, "store")
	inside := filepath.Join(data, "anchors")
	for _, tc := range []struct {
		args  []string
		key   string
		owner error
	}{
		{[]string{"--redact-key-file", short}, KeyRedactKeyFile, keyErr},
		{[]string{"--geoip-db", empty}, KeyGeoIPDB, sessions.ValidateGeoIPFile(empty)},
		{[]string{"--anchor-file", inside, "--data-dir", data}, KeyAnchorFile, anchor.ValidateFile(inside, data)},
		{[]string{"--anchor-syslog", "udp://host"}, KeyAnchorSyslog, anchor.ValidateSyslogAddr("udp://host")},
		{[]string{"--webhook-secret-file", short}, KeyWebhookSecretFile, secretErr},
	} {
		if tc.owner == nil {
			t.Fatalf("%v: the owner accepts it", tc.args)
		}
		c, err := load(t, tc.args, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = c.CheckFiles()
		if want := "config: " + tc.key + ": " + tc.owner.Error() + " (from --" + FlagName(tc.key) + ")"; err == nil || err.Error() != want {
			t.Errorf("%v:\n got %v\nwant %s", tc.args, err, want)
		}
	}
}

// Every key has a default that passes its own rule, and a usage.
func TestEveryKeyDeclared(t *testing.T) {
	c := Defaults()
	c.Sources = map[string]string{}
	for _, k := range keys {
		if k.usage == "" || !strings.Contains(k.usage, "`") && k.kind() != boolean {
			t.Errorf("%s: usage %q names no argument", k.name, k.usage)
		}
		if k.check != nil {
			if err := k.check(&c); err != nil {
				t.Errorf("%s: the default fails its rule: %v", k.name, err)
			}
		}
	}
}
