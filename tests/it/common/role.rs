//! A login role that must give its password (the cluster trusts everyone else): what a real
//! install's database user is. scripts/lib.sh (`need_password_auth`) puts the group
//! [`GROUP`] first in pg_hba.conf with scram-sha-256.

use super::{connect, unique, TestDb};

/// Members of this group log in with a password over TCP.
pub const GROUP: &str = "r2sync_password_auth";

/// A role of its own per test, dropped on drop (declare it before the rig, so the rig's
/// database, which holds its grants, is dropped first).
pub struct PasswordRole {
    pub name: String,
    pub password: String,
}

impl PasswordRole {
    pub async fn create() -> Self {
        let name = unique("r2sync_role");
        let password = format!("pw-{:016x}", rand::random::<u64>());
        let admin = connect("postgres").await;
        let exists: bool = admin
            .query_one("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", &[&GROUP])
            .await
            .unwrap()
            .get(0);
        assert!(
            exists,
            "role {GROUP} is missing: run the tests with the README's test command (make test), \
             which sets up password authentication for it"
        );
        admin
            .batch_execute(&format!(
                "CREATE ROLE {name} LOGIN PASSWORD '{password}' IN ROLE {GROUP}"
            ))
            .await
            .expect("create a password-auth role");
        Self { name, password }
    }

    /// Runs `statements` (written for the role `r2sync`, as the README writes them) for this
    /// role, as the database's owner.
    pub async fn run_as_owner(&self, db: &TestDb, statements: &[String]) {
        let client = db.client().await;
        for statement in statements {
            let sql = statement.replace(" r2sync;", &format!(" {};", self.name));
            assert_ne!(&sql, statement, "{statement} names no role r2sync");
            client
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    /// The settings that make r2-sync log in as this role.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [("DB_USER", self.name.clone()), ("DB_PASSWORD", self.password.clone())]
    }
}

impl Drop for PasswordRole {
    fn drop(&mut self) {
        super::admin_sql_in_drop(format!("DROP ROLE IF EXISTS {}", self.name));
    }
}

/// The `GRANT` statements of the README's install section, in its order.
pub fn readme_grants() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let grants: Vec<String> = readme
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("GRANT ") && l.ends_with(" TO r2sync;"))
        .map(str::to_owned)
        .collect();
    assert!(!grants.is_empty(), "the README lists no GRANT ... TO r2sync;");
    grants
}

/// `GRANT p ON o TO r2sync;` as the `REVOKE` that undoes it.
pub fn revoke_of(grant: &str) -> String {
    grant
        .replacen("GRANT ", "REVOKE ", 1)
        .replace(" TO r2sync;", " FROM r2sync;")
}
