//! The privileges a pass needs on the backend's database (docs/contract.md, "Privileges a
//! pass needs"), the `GRANT` that gives each, and the missing one named in PostgreSQL's
//! "permission denied" message. Pure: the queries that test them live in `db`.

use std::fmt;

use super::names;

/// The kind of object a privilege is on, as `GRANT ... ON <kind> <name>` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    Table,
    Sequence,
    Schema,
}

impl On {
    fn keyword(self) -> &'static str {
        match self {
            On::Table => "TABLE",
            On::Sequence => "SEQUENCE",
            On::Schema => "SCHEMA",
        }
    }
}

/// One privilege a pass needs, e.g. `UPDATE` on table `media`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    pub on: On,
    pub object: String,
    pub privilege: &'static str,
    /// What a pass does with it, for the operator.
    pub why: &'static str,
}

impl fmt::Display for Needed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.on {
            On::Table => "",
            On::Sequence => "sequence ",
            On::Schema => "schema ",
        };
        write!(f, "{} on {kind}{}", self.privilege, self.object)
    }
}

/// What the database holds that decides which privileges are needed.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// The schema the backend's tables are found in (`current_schema()`).
    pub schema: String,
    /// The sequence behind `audit_logs.id` (`pg_get_serial_sequence`), if any: an identity
    /// column needs no grant of its own.
    pub audit_sequence: Option<String>,
    /// r2-sync's lease table already exists (made by an earlier start or by the owner).
    pub lease_table_exists: bool,
}

/// What a pass writes, which decides what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Claims, records and audits.
    Archive,
    /// `SHADOW_DIR`: claims (row locks need UPDATE, and the lease table), records nothing.
    Shadow,
    /// `DRY_RUN`: reads the approved rows, nothing else.
    DryRun,
}

/// Every privilege a pass in `mode` needs on a database laid out as `layout`.
pub fn needed(layout: &Layout, mode: Mode) -> Vec<Needed> {
    let mut all = needed_to_archive(layout);
    all.retain(|n| match mode {
        Mode::Archive => true,
        Mode::Shadow => n.object != "audit_logs" && n.on != On::Sequence,
        Mode::DryRun => {
            (n.on == On::Schema && n.privilege == "USAGE") || (n.object == "media" && n.privilege == "SELECT")
        }
    });
    all
}

fn needed_to_archive(layout: &Layout) -> Vec<Needed> {
    let need = |on, object: &str, privilege, why| Needed {
        on,
        object: object.to_owned(),
        privilege,
        why,
    };
    let mut all = vec![
        need(On::Schema, &layout.schema, "USAGE", "find the tables"),
        need(On::Table, "media", "SELECT", "read approved rows"),
        need(
            On::Table,
            "media",
            "UPDATE",
            "claim rows and mark them archived or failed",
        ),
        need(On::Table, "audit_logs", "INSERT", "write the audit row"),
    ];
    if let Some(sequence) = &layout.audit_sequence {
        all.push(need(On::Sequence, sequence, "USAGE", "number the audit row"));
    }
    if layout.lease_table_exists {
        for privilege in ["SELECT", "INSERT", "UPDATE", "DELETE"] {
            all.push(need(
                On::Table,
                names::LEASES,
                privilege,
                "hold leases on rows in flight",
            ));
        }
    } else {
        all.push(need(
            On::Schema,
            &layout.schema,
            "CREATE",
            "create r2-sync's lease table",
        ));
    }
    all
}

/// The statements that give `role` what is `missing`, privileges on one object in one
/// `GRANT`, in the order first missed.
pub fn grant_statements(missing: &[&Needed], role: &str) -> Vec<String> {
    let mut objects: Vec<(On, &str, Vec<&str>)> = Vec::new();
    for n in missing {
        match objects
            .iter_mut()
            .find(|(on, object, _)| *on == n.on && *object == n.object)
        {
            Some((_, _, privileges)) => privileges.push(n.privilege),
            None => objects.push((n.on, &n.object, vec![n.privilege])),
        }
    }
    objects
        .into_iter()
        .map(|(on, object, privileges)| {
            format!(
                "GRANT {} ON {} {} TO {};",
                privileges.join(", "),
                on.keyword(),
                match on {
                    // As pg_get_serial_sequence gives it: already quoted where it must be.
                    On::Sequence => object.to_owned(),
                    On::Table | On::Schema => quote_ident(object),
                },
                quote_ident(role)
            )
        })
        .collect()
}

/// The `GRANT` a "permission denied for <kind> <name>" message from PostgreSQL asks for,
/// when it names an object a pass uses. `what` is the statement that was refused.
pub fn for_denial(message: &str, what: &str, role: &str) -> Option<String> {
    let rest = message.strip_prefix("permission denied for ")?;
    let (kind, object) = rest.split_once(' ')?;
    let on = match kind {
        "table" | "relation" => On::Table,
        "sequence" => On::Sequence,
        "schema" => On::Schema,
        _ => return None,
    };
    let privileges: &[&str] = match (on, object) {
        (On::Sequence, _) => &["USAGE"],
        (On::Schema, _) if what.starts_with("create") => &["USAGE", "CREATE"],
        (On::Schema, _) => &["USAGE"],
        (On::Table, "media") => &["SELECT", "UPDATE"],
        (On::Table, "audit_logs") => &["INSERT"],
        (On::Table, names::LEASES) => &["SELECT", "INSERT", "UPDATE", "DELETE"],
        (On::Table, _) => return None,
    };
    let missing: Vec<Needed> = privileges
        .iter()
        .map(|&privilege| Needed {
            on,
            object: object.to_owned(),
            privilege,
            why: "",
        })
        .collect();
    grant_statements(&missing.iter().collect::<Vec<_>>(), role).pop()
}

/// An identifier as SQL must write it: bare when it is plain lower-case, quoted otherwise.
pub fn quote_ident(name: &str) -> String {
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(sequence: bool, leases: bool) -> Layout {
        Layout {
            schema: "public".into(),
            audit_sequence: sequence.then(|| "audit_logs_id_seq".to_owned()),
            lease_table_exists: leases,
        }
    }

    #[test]
    fn a_fresh_database_needs_the_sequence_and_create_on_the_schema() {
        let all = needed(&layout(true, false), Mode::Archive);
        let refs: Vec<&Needed> = all.iter().collect();
        assert_eq!(
            grant_statements(&refs, "r2sync"),
            [
                "GRANT USAGE, CREATE ON SCHEMA public TO r2sync;",
                "GRANT SELECT, UPDATE ON TABLE media TO r2sync;",
                "GRANT INSERT ON TABLE audit_logs TO r2sync;",
                "GRANT USAGE ON SEQUENCE audit_logs_id_seq TO r2sync;",
            ]
        );
    }

    #[test]
    fn an_existing_lease_table_needs_its_privileges_instead_of_create() {
        let all = needed(&layout(false, true), Mode::Archive);
        assert!(!all.iter().any(|n| n.privilege == "CREATE"));
        assert!(
            !all.iter().any(|n| n.on == On::Sequence),
            "identity column: no sequence grant"
        );
        let lease: Vec<&str> = all
            .iter()
            .filter(|n| n.object == names::LEASES)
            .map(|n| n.privilege)
            .collect();
        assert_eq!(lease, ["SELECT", "INSERT", "UPDATE", "DELETE"]);
    }

    #[test]
    fn shadow_and_dry_runs_need_only_what_they_use() {
        let names = |mode| -> Vec<String> {
            needed(&layout(true, false), mode)
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(
            names(Mode::Shadow),
            [
                "USAGE on schema public",
                "SELECT on media",
                "UPDATE on media",
                "CREATE on schema public"
            ]
        );
        assert_eq!(names(Mode::DryRun), ["USAGE on schema public", "SELECT on media"]);
    }

    #[test]
    fn a_denial_names_the_grant_to_run() {
        let grant = |message| for_denial(message, "insert audit row", "r2sync");
        assert_eq!(
            grant("permission denied for sequence audit_logs_id_seq").as_deref(),
            Some("GRANT USAGE ON SEQUENCE audit_logs_id_seq TO r2sync;")
        );
        assert_eq!(
            grant("permission denied for table audit_logs").as_deref(),
            Some("GRANT INSERT ON TABLE audit_logs TO r2sync;")
        );
        assert_eq!(
            for_denial("permission denied for schema public", "create lease table", "Sync Role").as_deref(),
            Some("GRANT USAGE, CREATE ON SCHEMA public TO \"Sync Role\";")
        );
        assert_eq!(grant("permission denied for table other"), None, "not ours to grant");
        assert_eq!(grant("relation \"media\" does not exist"), None);
    }

    #[test]
    fn identifiers_are_quoted_when_they_must_be() {
        assert_eq!(quote_ident("r2sync"), "r2sync");
        assert_eq!(quote_ident("R2Sync"), "\"R2Sync\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("1abc"), "\"1abc\"");
    }
}
