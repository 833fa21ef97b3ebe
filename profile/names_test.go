package profile

import (
	"slices"
	"testing"
)

// TestSecretName: the columns of Odoo 18's own models whose names mention
// a password, secret, token or key (from `git grep` of odoo/addons and
// addons at 18.0), judged one by one.
func TestSecretName(t *testing.T) {
	secret := []string{
		// base, auth_totp, auth_signup, auth_oauth, auth_ldap, web
		"password", "new_password", "confirm_password", "new_passwd", "totp_secret", "secret",
		"oauth_access_token", "ldap_password", "smtp_pass",
		// portal and documents shared by link: capability URLs
		"access_token", "invite_token", "account_token",
		// mail, calendar, gmail, outlook
		"google_gmail_access_token", "google_gmail_refresh_token", "microsoft_outlook_refresh_token",
		"google_calendar_rtoken", "google_calendar_token", "google_calendar_sync_token",
		"google_translate_api_key", "sfu_server_key", "tenor_api_key", "twilio_account_token", "keys",
		"cal_client_secret", "microsoft_outlook_client_secret",
		// payment providers, localisations, website
		"stripe_secret_key", "stripe_webhook_secret", "adyen_api_key", "adyen_hmac_key", "authorize_signature_key",
		"authorize_transaction_key", "paytm_merchant_key", "mp_bearer_token", "mp_webhook_secret_key",
		"recaptcha_private_key", "turnstile_secret_key", "unsplash_access_key", "plausible_shared_key",
		"account_peppol_migration_key", "l10n_hu_edi_signature_key", "attendance_kiosk_key", "pkcs12_password",
		"visibility_password", "Password",
		// PINs (hr kiosk, ETA USB token) and payment passphrases (APS, Ogone)
		"pin", "aps_sha_request", "aps_sha_response", "ogone_shakey_in", "pem_key", "smtp_ssl_private_key",
	}
	notSecret := []string{
		// identifiers named key: a parameter's name, XML ids
		"key",
		// published keys, key ids
		"public_key", "recaptcha_public_key", "stripe_publishable_key", "turnstile_site_key",
		"flutterwave_public_key", "adyen_client_key", "razorpay_key_id",
		// not credentials
		"avatar_cache_key", "website_form_key", "push_to_talk_key", "grouping_key", "website_meta_keywords",
		"signup_type", "auth_method", "login", "user_login", "name", "request", "index_name",
		"passport_id", "session_identifier", // the latter: in the profile's explicit list
	}
	for _, n := range secret {
		if !SecretName(n) {
			t.Errorf("SecretName(%q) = false, want true", n)
		}
	}
	for _, n := range notSecret {
		if SecretName(n) {
			t.Errorf("SecretName(%q) = true, want false", n)
		}
	}
}

func TestOdooSecretColumns(t *testing.T) {
	const (
		varchar   = 1043
		text      = 25
		bytea     = 17
		int4      = 23
		bool_     = 16
		float8    = 701
		timestamp = 1114
	)
	audit := []Column{{"create_uid", int4}, {"create_date", timestamp}, {"write_uid", int4}, {"write_date", timestamp}}
	orm := func(cols ...Column) []Column { return append(append([]Column{{"id", int4}}, cols...), audit...) }
	for _, tc := range []struct {
		table string
		cols  []Column
		want  []string
	}{
		{"change_password_own", orm(Column{"new_password", varchar}, Column{"confirm_password", varchar}), []string{"new_password", "confirm_password"}},
		{"change_password_user", orm(Column{"wizard_id", int4}, Column{"user_id", int4}, Column{"user_login", varchar}, Column{"new_passwd", varchar}), []string{"new_passwd"}},
		{"change_password_wizard", orm(), nil},
		{"res_users_identitycheck", orm(Column{"request", varchar}, Column{"auth_method", varchar}, Column{"password", varchar}), []string{"password"}},
		{"auth_totp_wizard", orm(Column{"user_id", int4}, Column{"secret", varchar}, Column{"url", varchar}, Column{"qrcode", bytea}, Column{"code", varchar}), []string{"secret"}},
		{"res_users_apikeys_description", orm(Column{"name", varchar}, Column{"duration", varchar}, Column{"expiration_date", timestamp}), nil},
		{"res_users", orm(Column{"login", varchar}, Column{"password", varchar}, Column{"totp_secret", varchar},
			Column{"oauth_access_token", varchar}, Column{"signature", text}, Column{"api_key_duration", float8}), []string{"password", "totp_secret", "oauth_access_token"}},
		{"sale_order", orm(Column{"name", varchar}, Column{"access_token", varchar}, Column{"payment_token_id", int4}), []string{"access_token"}},
		{"ir_attachment", orm(Column{"name", varchar}, Column{"access_token", varchar}, Column{"key", varchar}, Column{"db_datas", bytea}), []string{"access_token"}},
		{"ir_config_parameter", orm(Column{"key", varchar}, Column{"value", text}), nil},
		{"ir_ui_view", orm(Column{"key", varchar}, Column{"arch_db", text}, Column{"visibility_password", varchar}), []string{"visibility_password"}},
		{"ir_mail_server", orm(Column{"smtp_user", varchar}, Column{"smtp_pass", varchar}, Column{"smtp_authentication", varchar}), []string{"smtp_pass"}},
		{"payment_provider", orm(Column{"stripe_secret_key", varchar}, Column{"stripe_publishable_key", varchar}, Column{"allow_tokenization", bool_}), []string{"stripe_secret_key"}},
		{"res_users_settings", orm(Column{"google_calendar_token_validity", timestamp}, Column{"google_calendar_rtoken", varchar}), []string{"google_calendar_rtoken"}},
		// Not made by the ORM: no naming rules (the explicit list covers
		// Odoo's raw-SQL tables); an unrelated application's table neither.
		{"res_users_apikeys", []Column{{"id", int4}, {"name", varchar}, {"user_id", int4}, {"index", varchar}, {"key", varchar}, {"create_date", timestamp}}, nil},
		{"accounts", []Column{{"id", int4}, {"password", varchar}}, nil},
		// Unknown types (0) may hold a secret.
		{"res_partner", orm(Column{"signup_token", 0}), []string{"signup_token"}},
	} {
		got := OdooSecretColumns("public", tc.table, tc.cols)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.table, got, tc.want)
		}
	}
	// The explicit list covers the raw-SQL tables and the wizards' values
	// that the names do not say are secret.
	rules := Odoo().SecretRules()
	for _, want := range []string{"res_users_apikeys.key", "res_users_apikeys.index", "auth_totp_device.key",
		"auth_totp_wizard.url", "auth_totp_wizard.qrcode", "res_device_log.session_identifier", "http_sessions.sid"} {
		if !slices.ContainsFunc(rules, func(r ColumnRule) bool { return r.Table+"."+r.Column == "public."+want }) {
			t.Errorf("the Odoo profile's secrets lack public.%s", want)
		}
	}
}
