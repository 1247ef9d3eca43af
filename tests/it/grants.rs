//! What a real install meets first: a password-auth role holding exactly the README's grants,
//! each grant missing in turn, and each way the database settings can be wrong.

use crate::common;

use common::role::{readme_grants, revoke_of, PasswordRole};
use common::{media, object_key, NewMedia, Rig};

async fn run(rig: &Rig, role: &PasswordRole, args: &[&str], extra: &[(&str, String)]) -> (Option<i32>, String) {
    let mut cmd = rig.command(args);
    cmd.envs(role.env());
    cmd.envs(extra.iter().map(|(k, v)| (*k, v.clone())));
    let out = cmd.output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn line<'a>(out: &'a str, prefix: &str, name: &str) -> Option<&'a str> {
    out.lines()
        .find(|l| l.starts_with(prefix) && l.contains(&format!(" {name}:")))
}

async fn seed_video(rig: &Rig) -> i64 {
    let file = media::video(rig.dir.path(), "first.mp4", 1);
    let key = "uploads/7/first.mp4";
    let bytes = std::fs::read(file).unwrap();
    rig.storage().put(&object_key(key), &bytes, "video/mp4").await.unwrap();
    rig.insert_media(&NewMedia::approved(key, "first.mp4")).await
}

#[tokio::test]
async fn the_readmes_grants_pass_check_and_archive_on_the_first_pass() {
    let role = PasswordRole::create().await;
    let rig = Rig::new().await;
    role.run_as_owner(&rig.db, &readme_grants()).await;
    let (code, out) = run(&rig, &role, &["check"], &[]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(line(&out, "ok", "privileges").is_some(), "{out}");

    let id = seed_video(&rig).await;
    let (code, out) = run(&rig, &role, &["sync", "--once"], &[]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(rig.status(id).await, "archived", "{out}");
    assert_eq!(common::invariants::audits(&rig, id, "media.archived").await, 1);
    assert!(
        rig.storage().head(&object_key("uploads/7/first.mp4")).await.is_err(),
        "deleted from the bucket once recorded"
    );
}

#[tokio::test]
async fn each_missing_grant_fails_check_with_the_grant_that_fixes_it() {
    let role = PasswordRole::create().await;
    let rig = Rig::new().await;
    let grants = readme_grants();
    role.run_as_owner(&rig.db, &grants).await;
    for grant in &grants {
        role.run_as_owner(&rig.db, &[revoke_of(grant)]).await;
        let (code, out) = run(&rig, &role, &["check"], &[]).await;
        assert_eq!(code, Some(1), "without {grant}:\n{out}");
        let fail = line(&out, "FAIL", "privileges").unwrap_or_else(|| panic!("without {grant}:\n{out}"));
        // The statements check prints are what the owner runs: running them makes it pass.
        let printed: Vec<String> = fail
            .split("run as the tables' owner: ")
            .nth(1)
            .unwrap_or_else(|| panic!("{fail}"))
            .split_inclusive(';')
            .map(|s| s.trim().replace(&format!(" TO {};", role.name), " TO r2sync;"))
            .filter(|s| s.starts_with("GRANT "))
            .collect();
        assert!(!printed.is_empty(), "{fail}");
        role.run_as_owner(&rig.db, &printed).await;
        let (code, out) = run(&rig, &role, &["check"], &[]).await;
        assert_eq!(code, Some(0), "after running {printed:?}:\n{out}");
    }
}

#[tokio::test]
async fn a_missing_sequence_grant_is_named_in_the_pass_log_and_nothing_is_lost() {
    let role = PasswordRole::create().await;
    let rig = Rig::new().await;
    let grants: Vec<String> = readme_grants()
        .into_iter()
        .filter(|g| !g.contains("SEQUENCE"))
        .collect();
    role.run_as_owner(&rig.db, &grants).await;
    let id = seed_video(&rig).await;
    let (_, out) = run(&rig, &role, &["sync", "--once"], &[]).await;
    let owed = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["msg"].as_str().is_some_and(|m| m.starts_with("record owed")))
        .unwrap_or_else(|| panic!("no record owed line:\n{out}"));
    assert_eq!(
        owed["msg"], "record owed: permission denied: a grant is missing",
        "{owed}"
    );
    let error = owed["error"].as_str().unwrap();
    assert!(
        error.contains("permission denied for sequence audit_logs_id_seq")
            && error.contains(&format!("GRANT USAGE ON SEQUENCE audit_logs_id_seq TO {};", role.name)),
        "{error}"
    );
    assert_eq!(rig.status(id).await, "approved", "not recorded");
    assert!(
        rig.storage().head(&object_key("uploads/7/first.mp4")).await.is_ok(),
        "kept in the bucket"
    );
    // Once the grant is given, the next pass records it.
    role.run_as_owner(
        &rig.db,
        &["GRANT USAGE ON SEQUENCE audit_logs_id_seq TO r2sync;".to_owned()],
    )
    .await;
    let (code, out) = run(&rig, &role, &["sync", "--once"], &[]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(rig.status(id).await, "archived", "{out}");
}

/// A case: its name, the settings that make it, the words its `check` line must hold.
type Misconfig = (&'static str, Vec<(&'static str, String)>, Vec<String>);

#[tokio::test]
async fn each_database_misconfiguration_is_one_line_saying_what_postgres_or_the_network_said() {
    let role = PasswordRole::create().await;
    let rig = Rig::new().await;
    role.run_as_owner(&rig.db, &readme_grants()).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port = rig.env()["DB_PORT"].clone();
    let cases: [Misconfig; 4] = [
        (
            "wrong password",
            vec![("DB_PASSWORD", "not-the-password".into())],
            vec![
                format!("password authentication failed for user \"{}\"", role.name),
                format!("127.0.0.1:{port}"),
            ],
        ),
        (
            "wrong database",
            vec![("DB_NAME", "no_such_db".into())],
            vec![
                "database \"no_such_db\" does not exist".into(),
                format!("127.0.0.1:{port}"),
            ],
        ),
        (
            "closed port",
            vec![("DB_PORT", closed.to_string())],
            vec![format!("127.0.0.1:{closed}"), "Connection refused".into()],
        ),
        (
            "unknown host",
            vec![("DB_HOST", "no-such-host.invalid".into())],
            vec!["no-such-host.invalid:".into(), "failed to lookup address".into()],
        ),
    ];
    for (case, env, expected) in cases {
        let (code, out) = run(&rig, &role, &["check"], &env).await;
        assert_eq!(code, Some(1), "{case}:\n{out}");
        let fail = line(&out, "FAIL", "postgres").unwrap_or_else(|| panic!("{case}:\n{out}"));
        for words in &expected {
            assert!(fail.contains(words.as_str()), "{case}: {words:?} missing in\n{fail}");
        }
        assert!(!out.contains(&role.password), "{case}: the password is never printed");
    }
}

#[tokio::test]
async fn a_dry_run_needs_only_select_on_media() {
    let role = PasswordRole::create().await;
    let rig = Rig::new().await;
    role.run_as_owner(&rig.db, &["GRANT SELECT ON media TO r2sync;".to_owned()])
        .await;
    let dry = [("DRY_RUN", "true".to_owned())];
    let (code, out) = run(&rig, &role, &["check"], &dry).await;
    assert!(line(&out, "ok", "privileges").is_some(), "{out}");
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&rig, &role, &["check"], &[]).await;
    assert_eq!(code, Some(1), "a real pass needs more:\n{out}");
    assert!(line(&out, "FAIL", "privileges").is_some(), "{out}");
}
