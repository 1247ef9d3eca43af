use super::*;

fn base() -> HashMap<String, String> {
    [
        ("DB_HOST", "127.0.0.1"),
        ("DB_NAME", "media"),
        ("DB_USER", "sync"),
        ("DB_PASS", "hunter2-db"),
        ("R2_ENDPOINT", "https://acct.r2.cloudflarestorage.com/"),
        ("R2_ACCESS_KEY", "AKID"),
        ("R2_SECRET_KEY", "s3cr3t-r2-key"),
        ("R2_BUCKET", "uploads"),
        ("UNRAID_TUNNEL_SECRET", "0123456789abcdef0123456789abcdef-tunnel"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn with(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut vars = base();
    for (k, v) in pairs {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    vars
}

fn err(vars: &HashMap<String, String>) -> ConfigError {
    Config::from_vars(vars).expect_err("config should be refused")
}

#[test]
fn defaults_follow_the_contract() {
    let c = Config::from_vars(&base()).unwrap();
    assert_eq!(c.db.port, 5432);
    assert_eq!(
        c.db.password.expose(),
        "hunter2-db",
        "DB_PASS is an alias of DB_PASSWORD"
    );
    assert_eq!(c.db.sslmode, SslMode::Prefer);
    assert_eq!(c.r2.endpoint, "https://acct.r2.cloudflarestorage.com");
    assert_eq!(c.r2.region, "auto");
    assert_eq!(c.sync.batch_size, 10);
    assert!(matches!(c.sync.schedule, Schedule::Every(d) if d == Duration::from_secs(1800)));
    assert_eq!(c.sync.concurrency, 2);
    assert!(!c.sync.dry_run);
    assert!(c.sync.validate_media);
    assert_eq!(c.archive_dir, PathBuf::from("/media/archive"));
    assert_eq!(c.state_dir, PathBuf::from("/config"));
    assert_eq!(c.server.port, 8080);
    assert_eq!(c.server.health_port, 8081);
    assert_eq!(c.server.jwt_leeway, Duration::from_secs(30));
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.target_dir(), PathBuf::from("/media/archive"));
}

#[test]
fn db_password_wins_over_alias() {
    let c = Config::from_vars(&with(&[("DB_PASSWORD", "primary")])).unwrap();
    assert_eq!(c.db.password.expose(), "primary");
}

#[test]
fn durations_accept_the_documented_forms() {
    assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
    assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(parse_duration("45s").unwrap(), Duration::from_secs(45));
    assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
    assert!(parse_duration("0s").is_err());
    assert!(parse_duration("soon").is_err());
    assert!(parse_duration("-5m").is_err());
}

#[test]
fn each_missing_required_setting_is_named() {
    for var in [
        "DB_HOST",
        "DB_NAME",
        "DB_USER",
        "R2_ENDPOINT",
        "R2_ACCESS_KEY",
        "R2_SECRET_KEY",
        "R2_BUCKET",
        "UNRAID_TUNNEL_SECRET",
    ] {
        let mut vars = base();
        vars.remove(var);
        let e = err(&vars);
        assert_eq!(e.var, var);
        assert!(e.to_string().contains("is required"), "{e}");
        vars.insert(var.to_owned(), "   ".to_owned());
        assert_eq!(err(&vars).var, var, "blank counts as unset");
    }
}

#[test]
fn malformed_values_name_variable_and_value() {
    let cases = [
        ("DB_PORT", "99999"),
        ("DB_PORT", "abc"),
        ("BATCH_SIZE", "0"),
        ("BATCH_SIZE", "ten"),
        ("SYNC_INTERVAL", "often"),
        ("SYNC_CONCURRENCY", "-1"),
        ("SYNC_CRON", "every day"),
        ("DRY_RUN", "maybe"),
        ("DB_SSLMODE", "sometimes"),
        ("LOG_LEVEL", "loud"),
        ("R2_ENDPOINT", "ftp://x"),
        ("SERVER_PORT", "http"),
    ];
    for (var, value) in cases {
        let e = err(&with(&[(var, value)]));
        assert_eq!(e.var, var, "{var}={value} gave {e}");
        assert!(e.to_string().starts_with(&format!("configuration: {var}: ")), "{e}");
    }
}

#[test]
fn short_tunnel_secret_is_refused_without_echoing_it() {
    let e = err(&with(&[("UNRAID_TUNNEL_SECRET", "short-secret-value")]));
    assert_eq!(e.var, "UNRAID_TUNNEL_SECRET");
    assert!(!e.to_string().contains("short-secret-value"));
}

#[test]
fn cron_accepts_five_and_six_fields_and_replaces_interval() {
    let c = Config::from_vars(&with(&[("SYNC_CRON", "*/15 * * * *"), ("SYNC_INTERVAL", "5m")])).unwrap();
    assert!(matches!(c.sync.schedule, Schedule::Cron(_)));
    assert!(parse_cron("0 */15 * * * *").is_ok());
}

#[test]
fn flags_and_options_parse() {
    let c = Config::from_vars(&with(&[
        ("DRY_RUN", "TRUE"),
        ("SHADOW_DIR", "/media/shadow"),
        ("VALIDATE_MEDIA", "off"),
        ("LOG_LEVEL", "debug"),
        ("DB_SSLMODE", "disable"),
        ("JWT_LEEWAY", "0"),
    ]))
    .unwrap();
    assert!(c.sync.dry_run);
    assert!(!c.sync.validate_media);
    assert_eq!(c.target_dir(), PathBuf::from("/media/shadow"));
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(c.db.sslmode, SslMode::Disable);
    assert_eq!(c.server.jwt_leeway, Duration::ZERO);
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let c = Config::from_vars(&base()).unwrap();
    let dump = format!("{c:?} {c:#?}");
    for secret in ["hunter2-db", "s3cr3t-r2-key", "0123456789abcdef0123456789abcdef-tunnel"] {
        assert!(!dump.contains(secret), "secret {secret} leaked in {dump}");
    }
    assert!(dump.contains("[redacted]"));
    assert!(dump.contains("AKID"), "non-secret values stay visible");
}

#[test]
fn placeholder_values_from_the_examples_are_refused_by_name_without_echoing_them() {
    let cases = [
        ("UNRAID_TUNNEL_SECRET", "CHANGE_ME_to_openssl_rand_hex_32_output_0123"),
        ("R2_SECRET_KEY", "change_me"),
        ("R2_ACCESS_KEY", "ChangeMe-access-key"),
        ("DB_PASSWORD", "CHANGE_ME_db_password"),
        ("DB_PASS", "<password>"),
        ("DB_HOST", "<postgres-host>"),
        ("R2_ENDPOINT", "https://<account-id>.r2.cloudflarestorage.com"),
        ("R2_ENDPOINT", "https://CHANGE_ME_account_id.r2.cloudflarestorage.com"),
    ];
    for (var, value) in cases {
        let e = err(&with(&[(var, value)]));
        assert_eq!(e.var, var, "{value}");
        assert!(e.problem.contains("placeholder"), "{e}");
        assert!(!e.to_string().contains(value), "the value is not echoed: {e}");
    }
    // Real values that merely contain the words are fine.
    let ok = with(&[("DB_PASSWORD", "please-change-me-later"), ("R2_BUCKET", "a>b<c")]);
    assert!(Config::from_vars(&ok).is_ok());
}

#[test]
fn a_bad_cron_expression_is_one_line_saying_what_is_wrong() {
    let e = err(&with(&[("SYNC_CRON", "bad")]));
    assert_eq!(e.var, "SYNC_CRON");
    assert!(e.problem.contains("expected 5 fields"), "{e}");
    let e = err(&with(&[("SYNC_CRON", "0 99 * * *")]));
    assert_eq!(e.var, "SYNC_CRON");
    assert_eq!(e.to_string().lines().count(), 1, "{e}");
    assert!(e.problem.contains("0 99 * * *"), "{e}");
}
